"""What mmvim's tools need around mmengine's Runner, and the library does
not: run guards (settings, files, data, the ops backend), runner set-up,
the CPU DDP wrapper, CPU allocator tuning, and the checkpoint safety of
reading and writing (weights-only loads, plain data, atomic writes that
overwrite nothing, explicit resume).

``import mmvim`` does not import this package; the tools do.
"""
from .atomic_files import (
                           OverwriteRefusedError,
                           use_atomic_local_writes,
                           write_atomically,
)
from mmvim.models.utils.weights_fit import (
                           CheckpointMismatchError,
                           check_weights_fit,
)

from .checkpoint_loading import (
                           CheckpointFormatHook,
                           load_checkpoint_file,
                           load_fitting_weights,
                           use_safe_checkpoint_loaders,
)
from .checkpoint_plan import (
                           CheckpointPlan,
                           EarlierBestCheckpointsHook,
                           apply_checkpoint_plan,
                           checkpoint_layout,
                           plan_checkpoints,
)
from .config_options import check_cfg_options
from .cpu_allocator import reuse_freed_cpu_memory
from .cpu_distributed import CPUDistributedDataParallel, init_cpu_distributed
from .dataset_checks import check_dataset_samples
from .ops_backend import ops_backend_line
from .run_guards import (
                           RunSetupError,
                           check_checkpoint_loads,
                           check_datasets_exist,
                           check_pretrained_exist,
                           check_writable,
)
from .runner_setup import build_runner, load_config, prepare_process

__all__ = [
    'apply_checkpoint_plan', 'build_runner', 'check_cfg_options',
    'check_checkpoint_loads', 'check_dataset_samples', 'check_datasets_exist',
    'check_pretrained_exist', 'check_weights_fit', 'check_writable',
    'checkpoint_layout', 'CheckpointFormatHook', 'CheckpointMismatchError',
    'CheckpointPlan', 'CPUDistributedDataParallel',
    'EarlierBestCheckpointsHook', 'init_cpu_distributed',
    'load_checkpoint_file', 'load_config', 'load_fitting_weights',
    'ops_backend_line', 'OverwriteRefusedError', 'plan_checkpoints',
    'prepare_process', 'reuse_freed_cpu_memory', 'RunSetupError',
    'use_atomic_local_writes', 'use_safe_checkpoint_loaders',
    'write_atomically'
]
