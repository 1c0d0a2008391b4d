"""The ``triton`` backend: mmvim's Triton selective scan
(``mmvim::selective_scan_triton``, a ``torch.library.triton_op`` whose
kernels Inductor sees; nothing to compile at install) with the portable
causal conv (cuDNN on a GPU).

It runs on CUDA tensors, and on CPU tensors in Triton's interpreter
(``TRITON_INTERPRET=1``, set before this module is imported), which is how
CI tests it.
"""
import os

import torch

from ..library import conv_operator, scan_operator
from ..triton import interpreting
from . import portable  # noqa: F401 - defines the portable conv operators


def check() -> None:
    """Raise with the reason the kernels cannot launch here."""
    if interpreting():
        return
    if os.environ.get('TRITON_INTERPRET', '0') == '1':
        raise RuntimeError(
            'TRITON_INTERPRET=1 was set after mmvim\'s Triton kernels were '
            'defined, so they are compiled for a GPU: set it before the '
            'first use of the triton backend')
    if not torch.cuda.is_available():
        raise RuntimeError(
            'no CUDA GPU is visible to torch (Triton launches need one; '
            'TRITON_INTERPRET=1 runs the kernels slowly on the CPU)')
    import triton
    try:
        triton.runtime.driver.active.get_current_target()
    except Exception as error:  # noqa: BLE001 - driver errors vary
        raise RuntimeError(f'triton finds no GPU driver: {error}') from error


selective_scan = scan_operator('triton')
causal_conv1d_silu = conv_operator('torch')
