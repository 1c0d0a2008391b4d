"""tools/demo/image_demo.py paints a segmentation over a picture."""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import mmvim  # noqa: F401  registers VisionMamba


def save_random_checkpoint(config, path):
    """An untrained model, saved with the class names as the Runner does."""
    from mmseg.datasets import ADE20KDataset
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(config).model)
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=ADE20KDataset.METAINFO)), path)


def test_writes_blended_png_of_picture_size(tmp_path, tiny_config, tool_main):
    checkpoint = tmp_path / 'random.pth'
    save_random_checkpoint(tiny_config, checkpoint)
    picture = tmp_path / 'street.jpg'
    Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (40, 56, 3),
                                          dtype=np.uint8)).save(picture)
    out = tmp_path / 'out'
    args = ('tools/demo/image_demo.py', tiny_config, checkpoint, picture,
            '--out', out, '--device', 'cpu')

    tool_main(*args)
    painted = Image.open(out / 'street.png')
    assert painted.size == (56, 40)
    # blended: far from the picture, yet still following its noise
    painted = np.asarray(painted.convert('RGB'), float)
    original = np.asarray(Image.open(picture), float)
    assert np.abs(painted - original).mean() > 5
    assert np.corrcoef(painted.ravel(), original.ravel())[0, 1] > 0.3

    before = (out / 'street.png').read_bytes()
    with pytest.raises(SystemExit, match='--overwrite'):
        tool_main(*args)
    assert (out / 'street.png').read_bytes() == before
