"""Portable causal depthwise conv1d followed by SiLU."""
import torch
import torch.nn.functional as F


def causal_conv1d_silu_torch(x: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor = None) -> torch.Tensor:
    """``silu(conv(x))`` where output t only sees inputs t-k+1..t.

    x: (b, d, l); weight: (d, k); bias: (d,). Same as ``causal_conv1d_fn``
    with ``activation='silu'``; autograd gives the backward.
    """
    width = weight.shape[-1]
    out = F.conv1d(F.pad(x, (width - 1, 0)), weight.unsqueeze(1), bias,
                   groups=x.shape[1])
    return F.silu(out)
