"""The command-line pieces mmvim's tools share: their common arguments,
the task library a config belongs to, and running a Runner so that the
errors a user can fix end the command with a message, not a traceback."""
import argparse
import os
import sys
from typing import Callable, Optional

from mmengine.config import Config, DictAction

from .atomic_files import OverwriteRefusedError
from .checkpoint_loading import CheckpointMismatchError
from .run_guards import RunSetupError
from .runner_setup import build_runner

# The config's default_scope: the OpenMMLab library that builds its model.
TASK_LIBRARIES = ('mmseg', 'mmdet')


def tool_parser(description: str,
                checkpoint_help: Optional[str] = None,
                **checkpoint_options) -> argparse.ArgumentParser:
    """A parser with the config path and, when ``checkpoint_help`` is
    given, the checkpoint (``checkpoint_options`` go to its
    ``add_argument``, e.g. ``nargs='?'``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help='config file path')
    if checkpoint_help is not None:
        parser.add_argument(
            'checkpoint', help=checkpoint_help, **checkpoint_options)
    return parser


def add_cfg_options(parser: argparse.ArgumentParser, example: str) -> None:
    """``--cfg-options KEY=VALUE ...``, merged into the config."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=f'override config entries, e.g. {example}')


def add_launcher_options(parser: argparse.ArgumentParser,
                         launch_script: str) -> None:
    """``--launcher`` and the ``--local-rank`` torch.distributed.launch
    passes (older versions: ``--local_rank``)."""
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help=f'how the processes were started ({launch_script}: pytorch)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launched_args(parser: argparse.ArgumentParser,
                        argv=None) -> argparse.Namespace:
    """Parses the arguments of a tool with :func:`add_launcher_options`;
    the rank a launcher passed reaches mmengine as ``LOCAL_RANK``."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def task_library(cfg: Config) -> str:
    """'mmseg' or 'mmdet', the config's ``default_scope``; a ValueError
    names any other."""
    scope = cfg.get('default_scope')
    if scope not in TASK_LIBRARIES:
        raise ValueError(f"the config's default_scope is {scope!r}; "
                         'expected mmseg or mmdet')
    return scope


def init_task_model(cfg: Config, checkpoint: Optional[str], device: str):
    """The config's model from its library's inference API (mmseg's
    ``init_model``, mmdet's ``init_detector``), in eval mode on
    ``device``, with ``checkpoint`` loaded when given."""
    if task_library(cfg) == 'mmdet':
        from mmdet.apis import init_detector as init_model
    else:
        from mmseg.apis import init_model
    return init_model(cfg, checkpoint, device=device)


def run_runner(cfg: Config, prepare: Callable[[Config], None],
               action: str):
    """Calls ``prepare(cfg)``, builds the Runner and returns what its
    ``action`` ('train' or 'test') returns. A :class:`RunSetupError` from
    the preparation, or a checkpoint that does not fit or would overwrite a
    file, ends the process with its message."""
    try:
        prepare(cfg)
        runner = build_runner(cfg)
    except RunSetupError as error:
        sys.exit(f'error: {error}')
    try:
        return getattr(runner, action)()
    except (CheckpointMismatchError, OverwriteRefusedError) as error:
        sys.exit(f'error: {error}')
