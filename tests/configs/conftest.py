"""What the config tests share: a config read as CI reads it, and the model
it describes built in its library's registry."""
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

CONFIG_ROOT = Path(__file__).resolve().parents[2] / 'configs'


@pytest.fixture(scope='session')
def load_config():
    """Reads configs/PATH (e.g. 'ade20k/upernet_vim_tiny.py') without the
    backbone's pretrained checkpoint: CI downloads nothing."""

    def load(path):
        cfg = Config.fromfile(CONFIG_ROOT / path)
        cfg.model.backbone.init_cfg = None
        return cfg

    return load


@pytest.fixture(scope='session')
def build_model():
    """Builds a model config in the registry of ``scope`` (mmseg or
    mmdet)."""

    def build(model_cfg, scope):
        init_default_scope(scope)
        registry = __import__(f'{scope}.registry', fromlist=['MODELS'])
        return registry.MODELS.build(model_cfg)

    return build
