"""The command-line pieces the tools share."""
import argparse
import os

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from mmvim.runtime import RunSetupError
from mmvim.runtime.command_line import (DEBUG_ENV, add_cfg_options,
                                        add_launcher_options,
                                        leave_process_group,
                                        parse_launched_args, run_runner,
                                        task_library, tool_parser,
                                        user_errors)


def test_parser_reads_config_checkpoint_options_and_rank(monkeypatch):
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    parser = tool_parser('a tool', checkpoint_help='checkpoint file')
    add_cfg_options(parser, 'a.b=1')
    add_launcher_options(parser, 'dist_test.sh')
    args = parse_launched_args(parser, [
        'cfg.py', 'ckpt.pth', '--cfg-options', 'a.b=2', '--launcher',
        'pytorch', '--local-rank', '3'
    ])
    assert (args.config, args.checkpoint) == ('cfg.py', 'ckpt.pth')
    assert args.cfg_options == {'a.b': 2}
    assert args.launcher == 'pytorch'
    assert os.environ['LOCAL_RANK'] == '3'


def test_optional_checkpoint():
    parser = tool_parser('a tool', checkpoint_help='optional', nargs='?')
    assert parser.parse_args(['cfg.py']).checkpoint is None


def test_task_library_names_an_unknown_scope():
    assert task_library(Config(dict(default_scope='mmdet'))) == 'mmdet'
    with pytest.raises(ValueError, match="default_scope is 'mmpretrain'"):
        task_library(Config(dict(default_scope='mmpretrain')))


def run_args(config, **values):
    return argparse.Namespace(
        config=str(config), cfg_options=None, launcher='none', work_dir=None,
        **values)


def test_setup_errors_end_the_command_with_their_message(tmp_path,
                                                        monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    config = tmp_path / 'run.py'
    config.write_text('default_scope = "mmseg"\n')

    def prepare(cfg):
        raise RunSetupError('no data at data/ade')

    with pytest.raises(SystemExit, match='error: no data at data/ade'):
        run_runner(run_args(config), prepare, 'train')
    with pytest.raises(SystemExit, match='config .*missing.py does not '
                       'exist'):
        run_runner(run_args(tmp_path / 'missing.py'), prepare, 'train')


def test_debug_shows_the_traceback_instead(tmp_path, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    parser = tool_parser('a tool')
    assert not parser.parse_args(['cfg.py']).debug
    assert DEBUG_ENV not in os.environ
    assert parser.parse_args(['cfg.py', '--debug']).debug
    # set for this process and the ones it starts
    assert os.environ[DEBUG_ENV] == '1'
    with pytest.raises(RunSetupError, match='no data'):
        with user_errors():
            raise RunSetupError('no data')
    monkeypatch.setenv(DEBUG_ENV, '0')
    with pytest.raises(SystemExit, match='error: no data'):
        with user_errors():
            raise RunSetupError('no data')


def test_leave_process_group_joins_gloo_threads(tmp_path):
    """A gloo worker still alive at interpreter shutdown can abort the
    process (see leave_process_group): leaving the group ends its threads."""
    def thread_count():
        return len(os.listdir('/proc/self/task'))

    if not os.path.isdir('/proc/self/task'):
        pytest.skip('needs Linux /proc to count threads')
    before = thread_count()
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                            rank=0, world_size=1)
    try:
        dist.all_reduce(torch.ones(3))
        assert thread_count() > before  # gloo's workers
    finally:
        leave_process_group()
    assert not dist.is_initialized()
    assert thread_count() == before
