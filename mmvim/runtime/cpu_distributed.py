"""Distributed training on CPU-only hosts, through mmengine's Runner.

mmengine 0.10.7 binds every process to a CUDA device when it starts the
process group and wraps the model with ``device_ids=[LOCAL_RANK]``, so
``--launcher pytorch`` fails on machines without a GPU. On such hosts the
process group is started here with gloo (the Runner then skips its own
start), and the model is wrapped without device ids.
"""
import datetime

import torch
import torch.distributed as torch_dist
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS

from .run_guards import RunSetupError


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """MMDistributedDataParallel for CPU modules.

    torch's SyncBatchNorm only runs on accelerators, so SyncBN layers (the
    mmseg heads' default) become per-process BatchNorm here.
    """

    def __init__(self, module, **kwargs):
        kwargs.pop('device_ids', None)
        super().__init__(
            module=revert_sync_batchnorm(module), device_ids=None, **kwargs)


def init_cpu_distributed(cfg) -> None:
    """Starts a gloo process group and picks the CPU model wrapper when a
    distributed launcher runs on a host without CUDA; otherwise does
    nothing and leaves everything to mmengine."""
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise RunSetupError(
            f'--launcher {cfg.launcher} needs GPUs; on a CPU-only host use '
            'tools/dist_train.sh (--launcher pytorch).')
    # nccl cannot run without CUDA; written back so the logged config says
    # what ran.
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg['dist_cfg'] = dict(env_cfg.get('dist_cfg') or {}, backend='gloo')
    if not torch_dist.is_initialized():
        dist_cfg = dict(env_cfg['dist_cfg'])
        if dist_cfg.get('timeout') is not None:
            dist_cfg['timeout'] = datetime.timedelta(
                seconds=dist_cfg['timeout'])
        torch_dist.init_process_group(**dist_cfg)
    wrapper_cfg = dict(cfg.get('model_wrapper_cfg') or {})
    if wrapper_cfg.get('type', 'MMDistributedDataParallel') in (
            'MMDistributedDataParallel', MMDistributedDataParallel):
        wrapper_cfg['type'] = 'CPUDistributedDataParallel'
        cfg.model_wrapper_cfg = wrapper_cfg
