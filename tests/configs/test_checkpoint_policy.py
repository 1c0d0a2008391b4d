"""No shipped config deletes checkpoints: every one a run saves is kept."""
from pathlib import Path

import pytest
from mmengine.config import Config

CONFIG_ROOT = Path(__file__).resolve().parents[2] / 'configs'
RUNNABLE = sorted(
    path.relative_to(CONFIG_ROOT) for path in CONFIG_ROOT.rglob('*.py')
    if '_base_' not in path.parts)


def test_every_runnable_config_is_checked():
    assert len(RUNNABLE) >= 7, RUNNABLE


@pytest.mark.parametrize('name', RUNNABLE, ids=str)
def test_checkpoints_are_never_rotated(name):
    hook = Config.fromfile(CONFIG_ROOT / name).default_hooks.checkpoint
    # mmengine deletes a run's older checkpoints when this is positive.
    assert hook.get('max_keep_ckpts', -1) <= 0, hook
