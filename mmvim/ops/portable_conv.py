"""Portable causal depthwise conv1d followed by SiLU (any device): the
``mmvim::causal_conv1d_silu_torch`` operator pair, which every backend
without a conv kernel of its own uses."""
import torch
import torch.nn.functional as F

from .library import compute_dtype, empty_in_layout_of, no_gradient


def _conv(x, weight, bias, reverse):
    """In the compute dtype (float32, or float64 for float64 x), as the
    compiled kernel: an operator's body sees no autocast, and x, weight and
    bias may differ in dtype."""
    dtype = compute_dtype(x.dtype)
    x, weight = x.to(dtype), weight.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    width = weight.shape[-1]
    padding = (0, width - 1) if reverse else (width - 1, 0)
    taps = weight.flip(-1) if reverse else weight
    return F.silu(
        F.conv1d(F.pad(x, padding), taps.unsqueeze(1), bias,
                 groups=x.shape[1]))


def conv_forward(x: torch.Tensor, weight: torch.Tensor, bias, reverse: bool):
    """``silu(conv(x))`` where output t only sees inputs t-k+1..t, as
    ``causal_conv1d_fn(..., activation='silu')``. ``reverse``: output t sees
    t..t+k-1 with the taps mirrored, which equals the causal conv of the
    flipped sequence, flipped back, without flipping x. Written in x's
    layout."""
    out = empty_in_layout_of(x)
    out.copy_(_conv(x, weight, bias, reverse))
    return out


def conv_backward(x, weight, bias, reverse, grad_out):
    """The gradients of x (in its layout), weight and bias, by autograd
    through :func:`conv_forward`'s PyTorch ops."""
    given = (x, weight) if bias is None else (x, weight, bias)
    _, pullback = torch.func.vjp(
        lambda *tensors: _conv(*tensors, *((None, ) if bias is None else ()),
                               reverse), *given)
    grads = pullback(grad_out.to(compute_dtype(x.dtype)))
    grad_x = empty_in_layout_of(x)
    grad_x.copy_(grads[0])
    return (grad_x, grads[1].to(weight.dtype).contiguous(),
            no_gradient(x) if bias is None else grads[2].to(
                bias.dtype).contiguous())
