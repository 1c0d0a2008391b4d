"""What the tools add to the Runner: a log folder no other run shares, a
config dump that never replaces an earlier run's, the test metrics written
by one process."""
import time
import types
from pathlib import Path

import pytest

from mmvim.runtime import build_runner, load_config
from mmvim.runtime.runner_setup import claim_log_folder

TINY_CONFIG = Path(__file__).resolve().parents[1] / (
    'data/configs/tiny_upernet_vim.py')


def test_a_log_folder_taken_in_the_same_second_gets_a_suffix(tmp_path):
    assert claim_log_folder(str(tmp_path), '20260101_120000') == \
        '20260101_120000'
    assert claim_log_folder(str(tmp_path), '20260101_120000') == \
        '20260101_120000_1'
    (tmp_path / '20260101_120000_2').write_text('a file, not a folder')
    assert claim_log_folder(str(tmp_path), '20260101_120000') == \
        '20260101_120000_3'


@pytest.fixture
def same_second(monkeypatch):
    """Every Runner starts at the same second."""
    import mmengine.runner.runner as runner_module
    monkeypatch.setattr(
        runner_module, 'time',
        types.SimpleNamespace(time=lambda: 1767268800.0,
                              strftime=time.strftime,
                              localtime=time.localtime))


@pytest.mark.slow
def test_runs_in_one_work_dir_keep_their_logs_and_the_first_config(
        tmp_path, monkeypatch, same_second):
    monkeypatch.setenv('TINY_ADE20K_ROOT', str(tmp_path / 'no_data_needed'))
    work_dir = tmp_path / 'work'

    def build(**options):
        return build_runner(load_config(
            str(TINY_CONFIG), {'experiment_name': f'run{len(options)}',
                               **options}, work_dir=str(work_dir)))

    first = build()
    dumped = (work_dir / 'tiny_upernet_vim.py').read_text()
    second = build(**{'train_cfg.max_iters': 2})
    assert first.log_dir != second.log_dir
    assert second.log_dir == f'{first.log_dir}_1'
    # the first run's config stays; each run's own is in its log folder
    assert (work_dir / 'tiny_upernet_vim.py').read_text() == dumped
    assert 'max_iters=2' in Path(second.log_dir,
                                 'vis_data/config.py').read_text()
    # each log file holds its own run's lines only
    assert Path(first.log_dir).name != Path(second.log_dir).name
    # the test metrics JSON is the main process's alone
    assert second.cfg.default_hooks.logger.type == 'MainProcessLoggerHook'
