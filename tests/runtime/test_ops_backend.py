"""The ops backend of a run: checked before the Runner is built, stated in
its log with why any faster backend does not run."""
from pathlib import Path

import pytest

import mmvim.ops
from mmvim.ops import BackendStatus
from mmvim.runtime import RunSetupError, build_runner, load_config
from mmvim.runtime.ops_backend import ops_backend_line

TINY_CONFIG = Path(__file__).resolve().parents[1] / (
    'data/configs/tiny_upernet_vim.py')


def test_the_line_names_the_backend_and_why_faster_ones_do_not_run(
        monkeypatch):
    chosen = mmvim.ops.get_backend('cpu')
    assert ops_backend_line('cpu').startswith(
        f'mmvim ops backend for cpu tensors: {chosen};')
    # a damaged compiled extension: auto falls back to the portable ops
    monkeypatch.setattr(mmvim.ops, 'get_backend', lambda device: 'torch')
    monkeypatch.setattr(mmvim.ops, 'auto_order',
                        lambda device_type: ('cpu', 'torch'))
    monkeypatch.setattr(mmvim.ops, 'list_backends', lambda: [
        BackendStatus('cpu', False, 'OSError: file too short', ('cpu', ),
                      'compiled', 'rebuild it'),
        BackendStatus('torch', True, None, None, 'portable', 'none'),
    ])
    assert ops_backend_line('cpu') == (
        'mmvim ops backend for cpu tensors: torch; faster ones: cpu '
        'unavailable: OSError: file too short (auto order: cpu, torch)')


def test_a_forced_backend_that_cannot_run_is_a_setup_error():
    # (an unknown MMVIM_OPS_BACKEND: tests/tools/test_train_test_tools.py)
    with mmvim.ops.use_backend('cuda'):
        with pytest.raises(RunSetupError,
                           match="'cuda' mmvim ops backend was forced"):
            ops_backend_line('cpu')


@pytest.mark.slow
def test_every_run_states_its_ops_backend_in_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv('TINY_ADE20K_ROOT', str(tmp_path / 'no_data_needed'))
    runner = build_runner(
        load_config(str(TINY_CONFIG), work_dir=str(tmp_path / 'work')))
    log = Path(runner.log_dir, f'{runner.timestamp}.log').read_text()
    assert ops_backend_line('cpu') in log
