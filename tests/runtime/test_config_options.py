"""--cfg-options keys are checked against the classes they configure."""
from pathlib import Path

import pytest

from mmvim.runtime import RunSetupError, check_cfg_options, load_config

TINY_CONFIG = Path(__file__).resolve().parents[1] / (
    'data/configs/tiny_upernet_vim.py')


@pytest.fixture(scope='module')
def cfg():
    return load_config(str(TINY_CONFIG))


@pytest.mark.parametrize('key,named', [
    ('train_cfg.max_iter', "IterBasedTrainLoop takes no 'max_iter' "
     r'\(did you mean max_iters\?\)'),
    ('model.decode_head.num_class', "UPerHead takes no 'num_class' "
     r'\(did you mean num_classes\?'),
    ('model.backbone.dropout', "VisionMamba takes no 'dropout'"),
    ('default_hooks.checkpoint.intervall', "CheckpointHook takes no "
     "'intervall'"),
])
def test_a_key_the_class_does_not_take_is_named(cfg, key, named):
    with pytest.raises(RunSetupError, match=f'--cfg-options {key}: {named}'):
        check_cfg_options(cfg, {key: 2})


def test_new_keys_the_classes_take_are_accepted(cfg):
    check_cfg_options(cfg, {
        'train_cfg.val_begin': 2,
        'model.backbone.with_cp': True,
        'model.backbone.pretrain_img_size': 224,
        'default_hooks.checkpoint.max_keep_ckpts': 3,
        'default_hooks.checkpoint.priority': 'LOW',
        'optim_wrapper.clip_grad': dict(max_norm=1.0),
        'optim_wrapper.optimizer.amsgrad': True,
        # keys already in the config, and sections without a class
        'train_cfg.max_iters': 2,
        'train_dataloader.prefetch_factor': 2,
        'model.test_cfg.stride': (16, 16),
        'experiment_name': 'run',
    })
