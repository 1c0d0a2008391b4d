"""The ``flop_count`` ops backend: the portable ops, each scan call traced as
one opaque node (the jit tracer does not look inside an autograd Function),
so a FLOP counter can give it its formula. Registered by
:mod:`mmvim.analysis.complexity`; auto never picks it."""
import torch

from mmvim.ops.backends import portable

causal_conv1d_silu = portable.causal_conv1d_silu


class OpaqueSelectiveScan(torch.autograd.Function):
    """``scan(*args)`` as a single traced node."""

    @staticmethod
    def forward(ctx, scan, u, delta, A, B, C, D, z, delta_bias,
                delta_softplus):
        return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan(*args):
    return OpaqueSelectiveScan.apply(portable.selective_scan, *args)


def bidirectional_selective_scan(*args):
    return OpaqueSelectiveScan.apply(portable.bidirectional_selective_scan,
                                     *args)
