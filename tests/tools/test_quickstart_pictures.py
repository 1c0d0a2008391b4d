"""The quickstarts' pictures: each writes its panels from a saved checkpoint
beside it, at 4x the toy pictures, for segmentation and detection."""
import numpy as np
import pytest
import torch
from PIL import Image

from mmvim.runtime import load_config

pytestmark = pytest.mark.slow  # builds the models, runs inference


def size_of(picture):
    with Image.open(picture) as image:
        return image.size


def save_checkpoint(model, path, classes=None):
    meta = {} if classes is None else dict(dataset_meta=dict(classes=classes))
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, path)
    return path


def test_segmentation_quickstart_panels(tool_module, tiny_config,
                                        tiny_ade20k_root, tmp_path):
    from mmseg.apis import init_model
    quickstart = tool_module('tools/demo/quickstart.py')
    cfg = load_config(str(tiny_config))
    checkpoint = save_checkpoint(
        init_model(cfg, device='cpu'), tmp_path / 'iter_4.pth')
    panels = quickstart.write_panels(cfg, checkpoint, tiny_ade20k_root, 2)
    pictures = sorted(
        (tiny_ade20k_root / 'images' / 'validation').glob('*.jpg'))
    assert panels == [tmp_path / f'panel_{p.stem}.png' for p in pictures]
    for panel in panels:
        width, height = size_of(panel)
        assert width >= 3 * 4 * 32 and height >= 4 * 32


def test_ground_truth_as_trained_on(tool_module, tmp_path):
    quickstart = tool_module('tools/demo/quickstart.py')
    Image.fromarray(np.array([[0, 1], [5, 2]], np.uint8)).save(tmp_path /
                                                             'a.png')
    np.testing.assert_array_equal(
        quickstart.ground_truth_labels(tmp_path / 'a.png'),
        [[255, 0], [4, 1]])


def test_detection_quickstart_panel(tool_module, tmp_path):
    from mmdet.apis import init_detector

    from mmvim.visualization import ScoreThreshold
    quickstart = tool_module('tools/demo/quickstart_det.py')
    toy = tool_module('tools/dataset_converters/make_toy_coco.py')
    data_root = tmp_path / 'toy_coco'
    toy.make_toy_coco(data_root, num_train=1, num_val=2)
    cfg = load_config(
        str(quickstart.CONFIG), {
            'model.backbone.arch': dict(embed_dims=32, num_layers=2),
            'model.neck.in_channels': 32,
        })
    model = init_detector(cfg, device='cpu')
    for name, score_thr in (('given', 0.0), ('chosen', None)):
        (tmp_path / name).mkdir()
        checkpoint = save_checkpoint(model, tmp_path / name / 'iter_1.pth',
                                     toy.CLASSES)
        panel, chosen = quickstart.write_panel(cfg, str(checkpoint),
                                               str(data_root), score_thr)
        assert panel == tmp_path / name / 'panel_000000.png'
        width, height = size_of(panel)
        assert width >= 3 * 4 * 160 and height >= 4 * 128
        # A threshold given is used as it is; otherwise one is chosen from
        # the scores of both validation pictures.
        assert (chosen is None) == (score_thr is not None)
    assert isinstance(chosen, ScoreThreshold) and 0 <= chosen.f1 <= 1
