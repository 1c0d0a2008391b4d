"""The config-to-Runner steps tools/train.py and tools/test.py share.

The config's ``default_scope`` (mmseg or mmdet) decides which registries the
Runner builds from, so the same tools serve segmentation and detection.
"""
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .atomic_files import use_atomic_local_writes
from .checkpoint_loading import (
    CheckpointFormatHook,
    use_safe_checkpoint_loaders,
)
from .cpu_allocator import reuse_freed_cpu_memory
from .cpu_distributed import init_cpu_distributed


def load_config(config_path: str,
                cfg_options: Optional[dict] = None,
                launcher: str = 'none',
                work_dir: Optional[str] = None) -> Config:
    """Reads a config, applies --cfg-options, and settles the work dir:
    the command line wins, then the config, then work_dirs/<config name>."""
    cfg = Config.fromfile(config_path)
    if cfg_options:
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


def build_runner(cfg: Config) -> Runner:
    """Builds the Runner (or the config's ``runner_type``) after
    :func:`prepare_process` and the steps CPU-only hosts need, with
    :class:`CheckpointFormatHook` (plain-data checkpoints, loaded weights
    that must fit)."""
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
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.register_hook(CheckpointFormatHook())
    return runner
