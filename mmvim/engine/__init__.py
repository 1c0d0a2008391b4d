from .checkpoint_safety import allow_mmengine_checkpoints
from .cpu_distributed import CPUDistributedDataParallel, init_cpu_distributed
from .optimizers import VimLayerDecayOptimWrapperConstructor
from .run_guards import (RunSetupError, check_checkpoints_kept,
                         check_datasets_exist, check_pretrained_exist)
from .runner_setup import build_runner, load_config

__all__ = [
    'allow_mmengine_checkpoints', 'build_runner', 'check_checkpoints_kept',
    'check_datasets_exist', 'check_pretrained_exist',
    'CPUDistributedDataParallel',
    'init_cpu_distributed', 'load_config', 'RunSetupError',
    'VimLayerDecayOptimWrapperConstructor'
]
