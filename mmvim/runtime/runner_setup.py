"""The config-to-Runner steps tools/train.py and tools/test.py share.

The config's ``default_scope`` (mmseg or mmdet) decides which registries the
Runner builds from, so the same tools serve segmentation and detection.
Whatever Runner class the config names is built with what the tools add
(:class:`ToolRunnerMixin`): a log folder of its own, a config dump that
never replaces an earlier run's, the ops backend stated in the log.
"""
import itertools
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.dist import broadcast_object_list, is_main_process, master_only
from mmengine.hooks import LoggerHook
from mmengine.registry import HOOKS, RUNNERS
from mmengine.runner import Runner

from .atomic_files import (OverwriteRefusedError, use_atomic_local_writes,
                           write_atomically)
from .checkpoint_loading import (
    CheckpointFormatHook,
    use_safe_checkpoint_loaders,
)
from .checkpoint_plan import EarlierBestCheckpointsHook
from .config_options import check_cfg_options
from .cpu_allocator import reuse_freed_cpu_memory
from .cpu_distributed import init_cpu_distributed
from .ops_backend import ops_backend_line
from .run_guards import RunSetupError


def load_config(config_path: str,
                cfg_options: Optional[dict] = None,
                launcher: str = 'none',
                work_dir: Optional[str] = None) -> Config:
    """Reads a config, applies --cfg-options (refusing keys the class they
    configure does not take, see :func:`check_cfg_options`), and settles the
    work dir: the command line wins, then the config, then
    work_dirs/<config name>.

    Raises:
        RunSetupError: no config file, or an option the class it sets does
            not take.
    """
    if not osp.isfile(config_path):
        raise RunSetupError(f'config {config_path} does not exist; check '
                            'the path (configs/ holds the ones mmvim ships)')
    cfg = Config.fromfile(config_path)
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join(
            'work_dirs',
            osp.splitext(osp.basename(config_path))[0])
    return cfg


def prepare_process() -> None:
    """What every tool sets up before it loads or saves a checkpoint:
    weights-only loading through every mmengine loader, and atomic local
    writes that never replace another run's files."""
    use_safe_checkpoint_loaders()
    use_atomic_local_writes()


def claim_log_folder(work_dir: str, timestamp: str) -> str:
    """The name of a new log folder in ``work_dir``: ``timestamp``, or
    ``timestamp_1``, ``_2``, ... when another run started in the same
    second took it. The main process creates it (``os.mkdir`` fails if it
    exists, so two runs never share one) and tells the others."""
    name = [timestamp]
    if is_main_process():
        for number in itertools.count():
            candidate = timestamp if number == 0 else f'{timestamp}_{number}'
            try:
                os.mkdir(osp.join(work_dir, candidate))
            except FileExistsError:
                continue
            name = [candidate]
            break
    broadcast_object_list(name)
    return name[0]


@HOOKS.register_module()
class MainProcessLoggerHook(LoggerHook):
    """mmengine's LoggerHook, but only the main process writes the test
    metrics' JSON file: mmengine 0.10.7 has every process write it, to the
    same path, and the tools never replace a file another process wrote.
    (The other processes' console output is silenced by mmengine anyway.)
    """

    def after_test_epoch(self, runner, metrics=None) -> None:
        if is_main_process():
            super().after_test_epoch(runner, metrics)


class ToolRunnerMixin:
    """What the tools change in the Runner class a config names."""

    def setup_env(self, env_cfg: dict) -> None:
        """mmengine's set-up, then a log folder no other run shares:
        mmengine names it after the second the run starts, so two runs
        started in the same second into one work dir would interleave
        their logs and ``scalars.json`` records."""
        super().setup_env(env_cfg)
        self._timestamp = claim_log_folder(self.work_dir, self._timestamp)

    @master_only
    def dump_config(self) -> None:
        """Writes the config to ``work_dir`` as mmengine does, unless an
        earlier run (a training run tested or resumed later) wrote it
        there: that one is kept. Every run's own config is also in its log
        folder (``vis_data/config.py``)."""
        name = (osp.basename(self.cfg.filename) if self.cfg.filename else
                f'{self.timestamp}.py')
        path = osp.join(self.work_dir, name)
        try:
            if osp.lexists(path):
                raise OverwriteRefusedError(path)
            write_atomically(self.cfg.dump().encode('utf-8'), path)
        except OverwriteRefusedError:
            self.logger.info(
                f'{path} (an earlier run\'s config) is kept; this run\'s '
                f'config is {osp.join(self.log_dir, "vis_data", "config.py")}')


def _runner_class(cfg: Config) -> type:
    """The config's ``runner_type`` (default: mmengine's Runner), with
    :class:`ToolRunnerMixin`."""
    runner_type = cfg.get('runner_type', 'Runner')
    if not isinstance(runner_type, type):
        with RUNNERS.switch_scope_and_registry(
                cfg.get('default_scope')) as registry:
            runner_type = registry.get(runner_type)
    return type(f'Tool{runner_type.__name__}', (ToolRunnerMixin, runner_type),
                {})


def _main_process_logger(cfg: Config) -> None:
    hooks = cfg.setdefault('default_hooks', {})
    logger = hooks.setdefault('logger', dict(type='LoggerHook'))
    if logger is not None and logger.get('type') in ('LoggerHook',
                                                     LoggerHook):
        logger['type'] = 'MainProcessLoggerHook'


def build_runner(cfg: Config) -> Runner:
    """Builds the Runner (or the config's ``runner_type``) after checking
    the ops backend the model will run on, :func:`prepare_process` and the
    steps CPU-only hosts need, with :class:`ToolRunnerMixin`,
    :class:`CheckpointFormatHook` (plain-data checkpoints, loaded weights
    that must fit) and :class:`EarlierBestCheckpointsHook`; the log states
    the ops backend.

    Raises:
        RunSetupError: ``MMVIM_OPS_BACKEND`` (or ``set_backend``) names an
            unknown backend or one that cannot run on the model's device.
    """
    ops_line = ops_backend_line(get_device())
    prepare_process()
    init_cpu_distributed(cfg)
    if not torch.cuda.is_available():
        # The portable scan's temporaries, reused instead of page-faulted in
        # again: a Vim-Ti training step ran about 1.4x faster on a CPU.
        reuse_freed_cpu_memory()
    if cfg.get('visualizer') is not None:
        # mmseg's and mmdet's runtimes name their visualizer 'visualizer':
        # a second runner in the process would get the first one's instance
        # and log into its folder. Unnamed, mmengine names it after the run.
        cfg.visualizer.pop('name', None)
    _main_process_logger(cfg)
    runner = _runner_class(cfg).from_cfg(cfg)
    runner.register_hook(CheckpointFormatHook())
    runner.register_hook(EarlierBestCheckpointsHook())
    runner.logger.info(ops_line)
    return runner
