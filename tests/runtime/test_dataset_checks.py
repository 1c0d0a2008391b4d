"""Every sample of a run's datasets is checked before the model is built:
missing or undecodable files, sizes that differ, label values outside the
classes."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmvim.runtime import RunSetupError, check_dataset_samples, load_config

TESTS = Path(__file__).resolve().parents[1]
TINY_CONFIG = TESTS / 'data/configs/tiny_upernet_vim.py'


def make_toy_ade20k(root):
    spec = importlib.util.spec_from_file_location(
        'make_toy_ade20k',
        TESTS.parent / 'tools/dataset_converters/make_toy_ade20k.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_toy_ade20k(root, num_train=6, num_val=2,
                                  size=(32, 32))


@pytest.fixture
def toy_cfg(tmp_path, monkeypatch):
    root = make_toy_ade20k(tmp_path / 'toy')
    monkeypatch.setenv('TINY_ADE20K_ROOT', str(root))
    return root, load_config(str(TINY_CONFIG))


def test_a_sound_dataset_passes(toy_cfg):
    _, cfg = toy_cfg
    check_dataset_samples(cfg, ('train_dataloader', 'val_dataloader'))


def test_each_unusable_sample_is_named_with_its_file(toy_cfg):
    root, cfg = toy_cfg
    images, labels = root / 'images/training', root / 'annotations/training'
    kept = (labels / 'toy_00000.png').read_bytes()
    (labels / 'toy_00000.png').unlink()
    Image.new('L', (30, 32)).save(labels / 'toy_00001.png')
    out_of_range = np.ones((32, 32), np.uint8)
    out_of_range[0, :3] = 200
    Image.fromarray(out_of_range).save(labels / 'toy_00002.png')
    (images / 'toy_00003.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    with pytest.raises(RunSetupError) as error:
        check_dataset_samples(cfg, ('train_dataloader', 'val_dataloader'))
    problem, fix = str(error.value).splitlines()
    assert problem.startswith('dataset unusable: train_dataloader: 4 '
                              'unusable sample(s): ')
    assert fix == 'Fix or remove these files.'
    assert f'{labels / "toy_00000.png"}: missing' in problem
    assert (f'{labels / "toy_00001.png"}: 30x32, its picture '
            'toy_00001.jpg 32x32') in problem
    assert (f'{labels / "toy_00002.png"}: label values [200] outside the '
            '150 classes') in problem
    # the first three are named, the others counted
    assert problem.endswith('; ... and 1 more.')
    assert 'val_dataloader' not in problem
    (labels / 'toy_00000.png').write_bytes(kept)
    (labels / 'toy_00001.png').write_bytes(kept)
    (labels / 'toy_00002.png').write_bytes(kept)
    with pytest.raises(RunSetupError, match='1 unusable sample.s.: '
                       f'{images / "toy_00003.jpg"}: not a picture'):
        check_dataset_samples(cfg, ('train_dataloader', ))
