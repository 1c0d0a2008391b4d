"""Portable causal depthwise conv1d followed by SiLU (any device): the
``mmvim::causal_conv1d_silu_torch`` operator pair, which every backend
without a conv kernel of its own uses."""
import torch
import torch.nn.functional as F

from .library import compute_dtype, empty_in_layout_of, no_gradient


def _padding_and_taps(weight, reverse):
    """(left, right) zero padding and the taps as conv1d applies them: the
    causal conv pads on the left; ``reverse`` on the right, taps mirrored."""
    width = weight.shape[-1]
    if reverse:
        return (0, width - 1), weight.flip(-1)
    return (width - 1, 0), weight


def _pre_activation(x, weight, bias, reverse):
    """conv(x) + bias in the compute dtype (float32, or float64 for float64
    x), as the compiled kernel: an operator's body sees no autocast, and x,
    weight and bias may differ in dtype."""
    dtype = compute_dtype(x.dtype)
    padding, taps = _padding_and_taps(weight.to(dtype), reverse)
    return F.conv1d(F.pad(x.to(dtype), padding), taps.unsqueeze(1),
                    None if bias is None else bias.to(dtype),
                    groups=x.shape[1])


def conv_forward(x: torch.Tensor, weight: torch.Tensor, bias, reverse: bool):
    """``silu(conv(x))`` where output t only sees inputs t-k+1..t, as
    ``causal_conv1d_fn(..., activation='silu')``. ``reverse``: output t sees
    t..t+k-1 with the taps mirrored, which equals the causal conv of the
    flipped sequence, flipped back, without flipping x. Written in x's
    layout."""
    out = empty_in_layout_of(x)
    out.copy_(F.silu(_pre_activation(x, weight, bias, reverse)))
    return out


def conv_backward(x, weight, bias, reverse, grad_out):
    """The gradients of x (in its layout), weight and bias: through the SiLU,
    then the conv's transpose (the same conv of the gradient, padded on the
    other side, taps mirrored) and its correlation with x."""
    dtype = compute_dtype(x.dtype)
    pre = _pre_activation(x, weight, bias, reverse)
    sig = torch.sigmoid(pre)
    grad_pre = grad_out.to(dtype) * sig * (1 + pre * (1 - sig))
    (left, right), taps = _padding_and_taps(weight.to(dtype), reverse)
    grad_x = empty_in_layout_of(x)
    grad_x.copy_(F.conv1d(F.pad(grad_pre, (right, left)),
                          taps.flip(-1).unsqueeze(1), groups=x.shape[1]))
    windows = F.pad(x.to(dtype), (left, right)).unfold(-1, weight.shape[-1],
                                                       1)
    grad_taps = torch.einsum('bcl,bclk->ck', grad_pre, windows)
    grad_weight = grad_taps.flip(-1) if reverse else grad_taps
    return (grad_x, grad_weight.to(weight.dtype).contiguous(),
            no_gradient(x) if bias is None else grad_pre.sum((0, 2)).to(
                bias.dtype))
