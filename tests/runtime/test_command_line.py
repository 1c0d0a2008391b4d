"""The command-line pieces the tools share."""
import os

import pytest
from mmengine.config import Config

from mmvim.runtime import RunSetupError
from mmvim.runtime.command_line import (add_cfg_options, add_launcher_options,
                                        parse_launched_args, run_runner,
                                        task_library, tool_parser)


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


def test_setup_errors_end_the_command_with_their_message():

    def prepare(cfg):
        raise RunSetupError('no data at data/ade')

    with pytest.raises(SystemExit, match='error: no data at data/ade'):
        run_runner(Config(dict()), prepare, 'train')
