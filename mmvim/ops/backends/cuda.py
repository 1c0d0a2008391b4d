"""The ``cuda`` backend: the compiled kernels of mamba-ssm and causal-conv1d.

Importing this module imports both packages; the registry reports any error
(the released wheels raise ImportError, OSError or RuntimeError when their
extensions do not match the installed torch or CUDA) as the reason the
backend is unavailable.
"""
from causal_conv1d import causal_conv1d_fn
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

from ..flipping import bidirectional_by_flipping, reverse_by_flipping


def selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    return selective_scan_fn(u, delta, A, B, C, D, z, delta_bias,
                             delta_softplus)


def _causal_conv1d_silu(x, weight, bias):
    return causal_conv1d_fn(x, weight, bias, activation='silu')


bidirectional_selective_scan = bidirectional_by_flipping(selective_scan)
causal_conv1d_silu = reverse_by_flipping(_causal_conv1d_silu)
