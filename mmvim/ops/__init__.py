from .backend import (BACKEND_CHOICES, BACKEND_ENV, get_backend,
                      requested_backend, set_backend)
from .cpu_allocator import reuse_freed_cpu_memory
from .mamba_ops import causal_conv1d_silu, selective_scan
from .portable_scan import (selective_scan_sequential,
                                   selective_scan_torch)

__all__ = [
    'BACKEND_CHOICES', 'BACKEND_ENV', 'get_backend', 'requested_backend',
    'set_backend', 'causal_conv1d_silu', 'reuse_freed_cpu_memory',
    'selective_scan',
    'selective_scan_sequential', 'selective_scan_torch'
]
