"""Portable causal depthwise conv1d followed by SiLU."""
import torch
import torch.nn.functional as F


def causal_conv1d_silu_torch(x: torch.Tensor,
                             weight: torch.Tensor,
                             bias: torch.Tensor = None,
                             reverse: bool = False) -> torch.Tensor:
    """``silu(conv(x))`` where output t only sees inputs t-k+1..t.

    x: (b, d, l); weight: (d, k); bias: (d,). Same as ``causal_conv1d_fn``
    with ``activation='silu'``; autograd gives the backward. ``reverse``:
    output t sees t..t+k-1 with the taps mirrored, which equals the causal
    conv of the flipped sequence, flipped back, without flipping x.
    """
    width = weight.shape[-1]
    padding = (0, width - 1) if reverse else (width - 1, 0)
    taps = weight.flip(-1) if reverse else weight
    out = F.conv1d(F.pad(x, padding), taps.unsqueeze(1), bias,
                   groups=x.shape[1])
    return F.silu(out)
