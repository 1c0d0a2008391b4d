"""The ``cpu`` backend: mmvim's compiled selective scan and causal conv
(mmvim/ops/csrc).

The extension is built at install for the installing machine (see setup.py);
:func:`check` reports it unavailable, with the reason, where it was not built,
does not load against this torch, or was built for instructions this CPU
lacks.
"""
import platform
from typing import Optional

import torch

try:
    from .. import _cpu_scan
    _IMPORT_ERROR: Optional[str] = None
except Exception as error:  # noqa: BLE001 - reported by check()
    _cpu_scan = None
    _IMPORT_ERROR = f'{type(error).__name__}: {error}'


def _cpu_flags() -> Optional[set]:
    """The instruction-set flags of this CPU (Linux), None where unknown."""
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                if line.startswith(('flags', 'Features')):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return None


def check() -> None:
    if _cpu_scan is None:
        raise RuntimeError(f'extension not built: {_IMPORT_ERROR}')
    flags = _cpu_flags()
    if flags is not None and platform.machine() in ('x86_64', 'AMD64'):
        missing = [isa for isa in _cpu_scan.compiled_isa()
                   if isa not in flags]
        if missing:
            raise RuntimeError(
                f'extension built for {"/".join(missing)}, which this CPU '
                'lacks: rebuild it here (pip install --no-build-isolation -e '
                '., or MMVIM_CPU_MARCH=x86-64 for a portable build)')


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class CpuSelectiveScan(torch.autograd.Function):
    """The compiled scan; channels from ``reverse_from`` on scan backwards."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                reverse_from):
        per_token = [t for t in (u, delta, z) if t is not None]
        dtype = per_token[0].dtype
        for tensor in per_token[1:]:
            dtype = torch.promote_types(dtype, tensor.dtype)
        compute = _compute_dtype(dtype)
        grouped = B.dim() == 4
        # (b, g, n, l) -> (b, g, l, n): each token's B and C contiguous.
        Bt, Ct = [(t if grouped else t.unsqueeze(1)).transpose(
            -1, -2).to(compute).contiguous() for t in (B, C)]
        weights = [None if t is None else t.to(compute).contiguous()
                   for t in (A, D, delta_bias)]
        u_, delta_, z_ = [None if t is None else t.to(dtype)
                          for t in (u, delta, z)]
        y, states = _cpu_scan.selective_scan_forward(
            u_, delta_, weights[0], Bt, Ct, weights[1], z_, weights[2],
            delta_softplus, reverse_from, any(ctx.needs_input_grad))
        ctx.save_for_backward(u_, delta_, Bt, Ct, z_, states, *weights)
        ctx.config = (delta_softplus, reverse_from)
        ctx.like = (u, delta, A, B, C, D, z, delta_bias)
        return y.to(u.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        u, delta, Bt, Ct, z, states, A, D, delta_bias = ctx.saved_tensors
        delta_softplus, reverse_from = ctx.config
        (grad_u, grad_delta, grad_z, grad_A, grad_Bt, grad_Ct, grad_D,
         grad_bias) = _cpu_scan.selective_scan_backward(
             u, delta, A, Bt, Ct, D, z, delta_bias, delta_softplus,
             reverse_from, states, grad_y.to(u.dtype))
        u0, delta0, A0, B0, C0, D0, z0, bias0 = ctx.like
        if z0 is not None and z0.shape[1] != u.shape[1]:
            # One gate shared by both directions: add the halves' gradients.
            grad_z = grad_z.view(u.shape[0], 2, -1, u.shape[2]).sum(1)
        grad_B, grad_C = [g.transpose(-1, -2).reshape(like.shape).to(
            like.dtype) for g, like in ((grad_Bt, B0), (grad_Ct, C0))]

        def summed(grad, like):
            return None if like is None else grad.sum(0).to(like.dtype)

        return (grad_u.to(u0.dtype), grad_delta.to(delta0.dtype),
                summed(grad_A, A0), grad_B, grad_C, summed(grad_D, D0),
                None if z0 is None else grad_z.to(z0.dtype),
                summed(grad_bias, bias0), None, None)


class CpuCausalConv1dSilu(torch.autograd.Function):
    """The compiled depthwise conv + SiLU; ``reverse`` looks ahead."""

    @staticmethod
    def forward(ctx, x, weight, bias, reverse):
        compute = _compute_dtype(x.dtype)
        weight_, bias_ = [None if t is None else t.to(compute).contiguous()
                          for t in (weight, bias)]
        ctx.save_for_backward(x, weight_, bias_)
        ctx.reverse = reverse
        ctx.like = (weight, bias)
        return _cpu_scan.causal_conv1d_silu_forward(x, weight_, bias_,
                                                    reverse)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias = ctx.saved_tensors
        grad_x, grad_weight, grad_bias = \
            _cpu_scan.causal_conv1d_silu_backward(x, weight, bias,
                                                  ctx.reverse,
                                                  grad_out.to(x.dtype))
        weight0, bias0 = ctx.like
        return (grad_x, grad_weight.sum(0).to(weight0.dtype),
                None if bias0 is None else grad_bias.sum(0).to(bias0.dtype),
                None)


def causal_conv1d_silu(x, weight, bias, reverse):
    return CpuCausalConv1dSilu.apply(x, weight, bias, reverse)


def selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    return CpuSelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias,
                                  delta_softplus, u.shape[1])


def bidirectional_selective_scan(u, delta, A, B, C, D, z, delta_bias,
                                 delta_softplus):
    return CpuSelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias,
                                  delta_softplus, u.shape[1] // 2)


__all__ = [
    'check', 'selective_scan', 'bidirectional_selective_scan',
    'causal_conv1d_silu'
]
