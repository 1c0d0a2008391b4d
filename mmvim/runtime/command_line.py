"""The command-line pieces mmvim's tools share: their common arguments,
the task library a config belongs to, and running a Runner so that the
errors a user can fix end the command with a message, not a traceback
(``--debug`` or ``MMVIM_DEBUG=1`` shows the traceback instead)."""
import argparse
import contextlib
import gc
import os
import sys
from typing import Callable, Iterator, Optional

import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.device import get_device

from mmvim.models.utils import UnreadableCheckpointError
from mmvim.models.utils.weights_fit import CheckpointMismatchError
from .atomic_files import OverwriteRefusedError
from .ops_backend import ops_backend_line
from .run_guards import RunSetupError
from .runner_setup import build_runner, load_config

# Set (to 1) to see the traceback of errors the tools report as a message.
DEBUG_ENV = 'MMVIM_DEBUG'
# Errors a user fixes (a setting, a file, the data), reported as a message.
USER_ERRORS = (RunSetupError, CheckpointMismatchError, OverwriteRefusedError,
               UnreadableCheckpointError)

# The config's default_scope: the OpenMMLab library that builds its model.
TASK_LIBRARIES = ('mmseg', 'mmdet')


def debugging() -> bool:
    """Whether errors show their traceback (``--debug``, ``MMVIM_DEBUG``)."""
    return os.environ.get(DEBUG_ENV, '').strip().lower() in ('1', 'true',
                                                             'yes')


class _DebugAction(argparse.Action):
    """``--debug``: sets ``MMVIM_DEBUG=1`` for the process and the ones it
    starts (data workers); each distributed rank parses it itself."""

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[DEBUG_ENV] = '1'
        setattr(namespace, self.dest, True)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text} is not a whole number of '
                                         '1 or more')
    return value


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """``--debug``: tracebacks instead of one-line error messages."""
    parser.add_argument(
        '--debug',
        nargs=0,
        action=_DebugAction,
        default=False,
        help='show the traceback of errors that otherwise end the command '
        f'with a message (also: {DEBUG_ENV}=1)')


@contextlib.contextmanager
def user_errors(*more_types) -> Iterator[None]:
    """Ends the process with ``error: <message>`` (exit status 1) when a
    :data:`USER_ERRORS` (or one of ``more_types``) is raised inside, unless
    :func:`debugging`."""
    try:
        yield
    except USER_ERRORS + more_types as error:
        if debugging():
            raise
        sys.exit(f'error: {error}')


def tool_parser(description: str,
                checkpoint_help: Optional[str] = None,
                **checkpoint_options) -> argparse.ArgumentParser:
    """A parser with the config path, ``--debug`` and, when
    ``checkpoint_help`` is given, the checkpoint (``checkpoint_options`` go
    to its ``add_argument``, e.g. ``nargs='?'``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help='config file path')
    if checkpoint_help is not None:
        parser.add_argument(
            'checkpoint', help=checkpoint_help, **checkpoint_options)
    add_debug_option(parser)
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


def run_runner(args: argparse.Namespace, prepare: Callable[[Config], None],
               action: str):
    """Reads the config of ``args`` (``config``, ``cfg_options``,
    ``launcher``, ``work_dir``, see :func:`load_config`), calls
    ``prepare(cfg)``, builds the Runner and runs its ``action`` ('train' or
    'test'); returns the metrics of 'test' (None for 'train', whose model
    is let go with the runner, see :func:`leave_process_group`). The errors
    a user can fix (:data:`USER_ERRORS`: the settings, the files, the data,
    a checkpoint that does not load, does not fit or would overwrite a
    file) end the process with their message."""
    with user_errors():
        cfg = load_config(args.config, args.cfg_options, args.launcher,
                          args.work_dir)
        ops_backend_line(get_device())  # first: it needs no file
        prepare(cfg)
        runner = build_runner(cfg)
        outcome = getattr(runner, action)()
        metrics = outcome if action == 'test' else None
        del runner, outcome
    leave_process_group()
    return metrics


def leave_process_group() -> None:
    """Destroys the default process group of a distributed run, once
    nothing of the run holds it, so that gloo's worker threads end before
    the interpreter shuts down. A worker that drops the last reference to
    a tensor of the run's final collective needs the GIL for it; during
    shutdown Python ends such a thread with ``pthread_exit``, which aborts
    the process ("terminate called without an active exception", rank 0 or
    1 of a two-process CPU run in about 1 of 20 runs, traced to
    ``ProcessGroupGloo::runLoop``)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # the runner's reference cycles hold the DDP model
        dist.destroy_process_group()
