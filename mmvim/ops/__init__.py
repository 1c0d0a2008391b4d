"""Mamba ops for the Vim mixer, behind one registry of backends.

Built-in backends, in the order ``auto`` tries them:

========== ============ ==================================================
name       tensors      what
========== ============ ==================================================
cuda       CUDA         mamba-ssm's compiled scan (nvcc-built)
triton     CUDA         mmvim's Triton kernels (compiled at first use)
cpu        CPU          mmvim's compiled C++ kernels (built at install)
torch      any          mmvim's portable chunked scan (pure PyTorch)
sequential any          the plain token loop (tests, baseline; never auto)
========== ============ ==================================================

Each backend's ops are ``torch.library`` operators
(``mmvim::selective_scan_cpu``, ...; see :mod:`mmvim.ops.library`), so
``torch.compile``, ``torch.export`` and fake tensors see one operator call
per op. A new backend is one :func:`register_backend` call and one module in
:mod:`mmvim.ops.backends`; the mixer does not change. A backend may also
define ``rms_norm``, a compiled operator for the blocks' norm
(:func:`rms_norm`; the ``cpu`` backend does).
"""
import os

from .mamba_ops import (bidirectional_causal_conv1d_silu,
                        bidirectional_selective_scan, causal_conv1d_silu,
                        check_scan_arguments, selective_scan)
from .rms_norm import rms_norm, rms_norm_formula
from .registry import (BACKEND_ENV, Backend, BackendStatus, auto_order,
                       backend_names, get_backend, list_backends,
                       load_backend, register_backend, requested_backend,
                       set_backend, simulate_backend, unregister_backend,
                       use_backend)


def _triton_device_types():
    # Triton's interpreter runs the kernels on CPU tensors (that is how CI
    # tests them); auto never picks it there.
    interpreted = os.environ.get('TRITON_INTERPRET', '0') == '1'
    return ('cuda', 'cpu') if interpreted else ('cuda', )


# The built-in backends, in the order `python -m mmvim.ops` lists them; auto
# tries a device's backends by their auto_rank.
_BUILTIN_BACKENDS = (
    Backend('cuda', 'mmvim.ops.backends.cuda',
            "mamba-ssm's compiled CUDA scan, in mmvim's operators",
            fix='Install mamba-ssm with its CUDA kernel: '
            '`MAMBA_KEEP_CUDA_BUILD=TRUE pip install --no-build-isolation -r '
            'requirements/cuda.txt` on a machine with nvcc',
            device_types=('cuda', ), auto_rank={'cuda': 0}),
    Backend('triton', 'mmvim.ops.backends.triton',
            "mmvim's Triton kernels (no nvcc needed)",
            fix='Install triton (`pip install -e .[triton]`; every CUDA '
            'wheel of torch ships it) and run on an NVIDIA GPU, or set '
            'TRITON_INTERPRET=1 to interpret it on the CPU',
            device_types=_triton_device_types, auto_rank={'cuda': 1}),
    Backend('cpu', 'mmvim.ops.backends.cpu',
            "mmvim's compiled C++ kernels for CPUs",
            fix='Build it: `pip install --no-build-isolation -e .` (or '
            '`make install`) with a C++ compiler, MMVIM_WITH_CPU_OPS unset',
            device_types=('cpu', ), auto_rank={'cpu': 0}),
    Backend('torch', 'mmvim.ops.backends.portable',
            "mmvim's portable chunked scan in PyTorch",
            fix='It needs only torch', auto_rank={'default': 9}),
    Backend('sequential', 'mmvim.ops.backends.sequential',
            'the plain token-by-token loop (reference semantics; slow)',
            fix='It needs only torch'),
)
for _backend in _BUILTIN_BACKENDS:
    register_backend(_backend)

__all__ = [
    'BACKEND_ENV', 'Backend', 'BackendStatus', 'auto_order', 'backend_names',
    'bidirectional_causal_conv1d_silu', 'bidirectional_selective_scan',
    'causal_conv1d_silu',
    'check_scan_arguments', 'get_backend', 'list_backends', 'load_backend',
    'register_backend', 'requested_backend', 'rms_norm', 'rms_norm_formula',
    'selective_scan', 'set_backend',
    'simulate_backend', 'unregister_backend', 'use_backend'
]
