"""tools/demo/image_demo.py paints a segmentation over a picture, from
weights that fit the config only, and names the pictures it cannot use."""
import numpy as np
import pytest
import torch
from PIL import Image

SCRIPT = 'tools/demo/image_demo.py'


def noise_picture(path, height, width):
    Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (height, width, 3),
                                          dtype=np.uint8)).save(path)
    return path


def test_writes_blended_png_of_picture_size(tmp_path, tiny_config,
                                            random_checkpoint, tool_main):
    picture = noise_picture(tmp_path / 'street.jpg', 40, 56)
    out = tmp_path / 'out'
    args = (SCRIPT, tiny_config, random_checkpoint(), picture, '--out', out,
            '--device', 'cpu')

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
    (out / 'street.png').write_bytes(b'replace me')
    tool_main(*args, '--overwrite')
    assert (out / 'street.png').read_bytes() == before


def test_weights_that_do_not_fit_stop_the_demo(tmp_path, tiny_config,
                                               random_checkpoint, tool_main):

    def narrower_embedding(state_dict):
        state_dict['backbone.pos_embed'] = torch.zeros(1, 5, 8)

    picture = noise_picture(tmp_path / 'street.jpg', 40, 56)
    with pytest.raises(SystemExit) as stop:
        tool_main(SCRIPT, tiny_config,
                  random_checkpoint('narrow.pth', narrower_embedding),
                  picture, '--out', tmp_path / 'out', '--device', 'cpu')
    assert 'backbone.pos_embed (1, 5, 8) vs' in str(stop.value.code)
    assert not (tmp_path / 'out').exists()


def test_pictures_it_cannot_use_are_named(tmp_path, tiny_config,
                                         random_checkpoint, tool_main):
    empty = tmp_path / 'empty.jpg'
    empty.touch()
    with pytest.raises(SystemExit, match=f'empty .0-byte. picture: {empty}'):
        tool_main(SCRIPT, tiny_config, random_checkpoint(), empty, '--out',
                  tmp_path / 'out')
    not_a_picture = tmp_path / 'notes.jpg'
    not_a_picture.write_text('not a picture')
    with pytest.raises(SystemExit,
                       match=f'{not_a_picture} cannot be decoded'):
        tool_main(SCRIPT, tiny_config, random_checkpoint(), not_a_picture,
                  '--out', tmp_path / 'out', '--device', 'cpu')


@pytest.mark.parametrize('height,width', [(20, 20), (1, 1), (20, 500)])
def test_too_small_picture_is_named_with_its_size(tmp_path, tiny_config,
                                                  random_checkpoint,
                                                  tool_main, height, width):
    # the tiny config does not resize: 20 pixels give a 1-patch grid, which
    # the neck's 0.5x level cannot pool
    picture = noise_picture(tmp_path / 'thumb.png', height, width)
    with pytest.raises(SystemExit) as stop:
        tool_main(SCRIPT, tiny_config, random_checkpoint(), picture,
                  '--out', tmp_path / 'out', '--device', 'cpu')
    assert stop.value.code == (
        f'error: {picture} ({width}x{height}) reaches the model as '
        f'{width}x{height} after the config\'s test pipeline, smaller than '
        'the 32 pixels per side it needs: use a larger or less elongated '
        'picture, or a config whose test pipeline resizes it (the ADE20K '
        'and COCO configs do).')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('opacity', ['nan', '5', '-1', '0'])
def test_an_opacity_outside_0_1_is_refused(tmp_path, tiny_config, tool_main,
                                           opacity, capsys):
    with pytest.raises(SystemExit) as stop:
        tool_main(SCRIPT, tiny_config, tmp_path / 'none.pth',
                  tmp_path / 'none.png', '--opacity', opacity)
    assert stop.value.code == 2  # argparse's
    assert (f'argument --opacity: {opacity} is not a number in (0, 1]'
            in capsys.readouterr().err)


def test_paints_as_mmseg_does_in_bands(tmp_path, tiny_config,
                                       random_checkpoint, tool_main,
                                       monkeypatch):
    from mmseg.datasets import ADE20KDataset
    from mmseg.visualization import SegLocalVisualizer

    from mmvim.runtime import segmentation
    picture = noise_picture(tmp_path / 'street.png', 40, 56)
    # a band of 3 rows at a time
    monkeypatch.setattr(segmentation, 'BAND_BYTES', 56 * 3 * 3 * 8)
    labels = torch.from_numpy(np.random.default_rng(1).integers(
        0, 150, (1, 40, 56))).to(torch.uint8)
    image = np.asarray(Image.open(picture))
    painted = segmentation.paint_segmentation(
        image, labels, ADE20KDataset.METAINFO['palette'], 0.3)
    visualizer = SegLocalVisualizer(name='reference', alpha=0.3)
    visualizer.dataset_meta = {key.lower(): value for key, value in
                               ADE20KDataset.METAINFO.items()}
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(pred_sem_seg=PixelData(data=labels.long()))
    expected = visualizer._draw_sem_seg(image, sample.pred_sem_seg,
                                        visualizer.dataset_meta['classes'],
                                        visualizer.dataset_meta['palette'],
                                        with_labels=False)
    assert np.array_equal(painted, expected)
