"""RMSNorm, the norm of every Vim block: ``x * rsqrt(mean(x^2) + eps) *
weight`` over the last dimension, computed in float32 or wider.

torch's formula makes five passes and their temporaries over the block's
token stream, and autograd as many again; a backend may define ``rms_norm``,
a compiled operator with its backward making two passes each (the ``cpu``
backend does). It runs where it can stand in for the formula: float32 x and
weight, and nothing tracing the call (``torch.compile`` and ``torch.export``
see the formula, which Inductor fuses and ONNX has operators for; a jit
trace, as the FLOP counter makes, records it as well).
"""
import torch

from .mamba_ops import _below_autograd_unless, _needs_gradient
from .registry import resolve


def rms_norm_formula(x: torch.Tensor, weight: torch.Tensor,
                     eps: float) -> torch.Tensor:
    """torch's operators, in float32 (or wider): the output keeps x's
    dtype."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    wide = x.to(dtype)
    out = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
    return (out * weight.to(dtype)).to(x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor,
             eps: float) -> torch.Tensor:
    """x (..., D) normalised by its root mean square over D, times weight
    (D,): the backend's operator where it can stand in for the formula (see
    the module's docstring), else :func:`rms_norm_formula`."""
    if x.dtype == weight.dtype == torch.float32 and \
            not torch.compiler.is_compiling() and \
            not torch.jit.is_tracing():
        kernel = getattr(resolve(x.device)[1], 'rms_norm', None)
        if kernel is not None:
            with _below_autograd_unless(_needs_gradient((x, weight))):
                return kernel(x, weight, eps)
    return rms_norm_formula(x, weight, eps)
