"""Portable causal depthwise conv1d followed by SiLU (any device): the
``mmvim::causal_conv1d_silu_torch`` operator pair, which every backend
without a conv kernel of its own uses."""
from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F

from .library import compute_dtype, empty_in_layout_of, no_gradient


class Segment(NamedTuple):
    """Output channels [first, end), convolved one way, from consecutive
    input channels starting at ``source``."""
    first: int
    end: int
    source: int
    reverse: bool


def segments(d_in: int, d_out: int, reverse_from: int) -> Iterator[Segment]:
    """The output channels split at ``reverse_from`` and at every multiple of
    d_in (output channel c reads input channel c % d_in)."""
    first = 0
    while first < d_out:
        end = min(d_out, (first // d_in + 1) * d_in)
        if first < reverse_from < end:
            end = reverse_from
        yield Segment(first, end, first % d_in, first >= reverse_from)
        first = end


def _padding_and_taps(weight, reverse):
    """(left, right) zero padding and the taps as conv1d applies them: the
    causal conv pads on the left; ``reverse`` on the right, taps mirrored."""
    width = weight.shape[-1]
    if reverse:
        return (0, width - 1), weight.flip(-1)
    return (width - 1, 0), weight


def _inputs(x, weight, bias, segment):
    """The segment's x, weight and bias in the compute dtype (float32, or
    float64 for float64 x), as the compiled kernel: an operator's body sees
    no autocast, and x, weight and bias may differ in dtype."""
    dtype = compute_dtype(x.dtype)
    width = segment.end - segment.first
    return (x[:, segment.source:segment.source + width].to(dtype),
            weight[segment.first:segment.end].to(dtype),
            None if bias is None else bias[segment.first:segment.end].to(
                dtype))


def _pre_activation(x, weight, bias, reverse):
    padding, taps = _padding_and_taps(weight, reverse)
    return F.conv1d(F.pad(x, padding), taps.unsqueeze(1), bias,
                    groups=x.shape[1])


def conv_forward(x: torch.Tensor, weight: torch.Tensor, bias,
                 reverse_from: int):
    """``silu(conv(x))`` where output t only sees inputs t-k+1..t, as
    ``causal_conv1d_fn(..., activation='silu')``; the channels from
    ``reverse_from`` on see t..t+k-1 with the taps mirrored, which equals the
    causal conv of the flipped sequence, flipped back, without flipping x.
    Output channel c reads input channel c % d_in. Written in x's layout."""
    out = empty_in_layout_of(x, channels=weight.shape[0])
    for segment in segments(x.shape[1], weight.shape[0], reverse_from):
        out[:, segment.first:segment.end] = F.silu(_pre_activation(
            *_inputs(x, weight, bias, segment), segment.reverse))
    return out


def conv_backward(x, weight, bias, reverse_from, grad_out):
    """The gradients of x (in its layout), weight and bias: through the SiLU,
    then the conv's transpose (the same conv of the gradient, padded on the
    other side, taps mirrored) and its correlation with x; an input channel
    read by several output channels adds their gradients."""
    dtype = compute_dtype(x.dtype)
    grad_x = torch.zeros(x.shape, dtype=dtype, device=x.device)
    grad_weight = torch.empty(weight.shape, dtype=dtype, device=x.device)
    grad_bias = torch.empty(weight.shape[:1], dtype=dtype, device=x.device)
    for segment in segments(x.shape[1], weight.shape[0], reverse_from):
        x_seg, w_seg, b_seg = _inputs(x, weight, bias, segment)
        pre = _pre_activation(x_seg, w_seg, b_seg, segment.reverse)
        sig = torch.sigmoid(pre)
        grad_pre = grad_out[:, segment.first:segment.end].to(dtype) * sig * (
            1 + pre * (1 - sig))
        (left, right), taps = _padding_and_taps(w_seg, segment.reverse)
        grad_x[:, segment.source:segment.source + x_seg.shape[1]] += \
            F.conv1d(F.pad(grad_pre, (right, left)),
                     taps.flip(-1).unsqueeze(1), groups=x_seg.shape[1])
        windows = F.pad(x_seg, (left, right)).unfold(-1, weight.shape[-1], 1)
        grad_taps = torch.einsum('bcl,bclk->ck', grad_pre, windows)
        grad_weight[segment.first:segment.end] = grad_taps.flip(
            -1) if segment.reverse else grad_taps
        grad_bias[segment.first:segment.end] = grad_pre.sum((0, 2))
    grad_x_out = empty_in_layout_of(x)
    grad_x_out.copy_(grad_x)
    return (grad_x_out, grad_weight.to(weight.dtype),
            no_gradient(x) if bias is None else grad_bias.to(bias.dtype))
