"""The ops the Vim mixer calls, dispatched to kernels or portable code.

Every call asks :func:`mmvim.ops.backend.backend_for` which implementation
runs for its tensors; nothing else in mmvim imports mamba-ssm.
"""
from typing import Optional

import torch

from .backend import backend_for, load_cuda_kernels
from .portable_conv import causal_conv1d_silu_torch
from .portable_scan import selective_scan_torch


def selective_scan(u: torch.Tensor,
                   delta: torch.Tensor,
                   A: torch.Tensor,
                   B: torch.Tensor,
                   C: torch.Tensor,
                   D: Optional[torch.Tensor] = None,
                   z: Optional[torch.Tensor] = None,
                   delta_bias: Optional[torch.Tensor] = None,
                   delta_softplus: bool = False) -> torch.Tensor:
    """``y = scan(u) * silu(z)`` with mamba-ssm's ``selective_scan_fn``
    arguments (see :func:`selective_scan_torch` for the shapes)."""
    if backend_for(u.device) == 'cuda':
        kernels, _ = load_cuda_kernels()
        return kernels.selective_scan_fn(u, delta, A, B, C, D, z, delta_bias,
                                         delta_softplus)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias,
                                delta_softplus)


def causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor,
                       bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Causal depthwise conv1d + SiLU; x (b, d, l), weight (d, k)."""
    if backend_for(x.device) == 'cuda':
        kernels, _ = load_cuda_kernels()
        return kernels.causal_conv1d_fn(x, weight, bias, activation='silu')
    return causal_conv1d_silu_torch(x, weight, bias)
