"""The backward direction of a Vim layer, for backends that cannot read a
sequence in reverse: flip the inputs, run the forward op, flip the output.

This is what the reference mixer does for every backend; mmvim's own kernels
(``cpu``, ``triton``) index in reverse instead and need none of these copies.
"""
import torch


def _second_half_flipped(tensor: torch.Tensor, split: int) -> torch.Tensor:
    """tensor with the entries from ``split`` on (dim 1) in reversed token
    order (last dim)."""
    return torch.cat([tensor[:, :split], tensor[:, split:].flip(-1)], dim=1)


def bidirectional_by_flipping(scan):
    """The two-direction scan (see
    :func:`mmvim.ops.bidirectional_selective_scan`) from a one-direction
    ``scan``: one call on stacked, partly flipped copies of the inputs."""

    def bidirectional_selective_scan(u, delta, A, B, C, D, z, delta_bias,
                                     delta_softplus):
        half, groups = u.shape[1] // 2, B.shape[1] // 2
        y = scan(
            _second_half_flipped(u, half), _second_half_flipped(delta, half),
            A, _second_half_flipped(B, groups),
            _second_half_flipped(C, groups), D,
            None if z is None else torch.cat([z, z.flip(-1)], dim=1),
            delta_bias, delta_softplus)
        return _second_half_flipped(y, half)

    return bidirectional_selective_scan


def reverse_by_flipping(conv):
    """A ``causal_conv1d_silu(x, weight, bias, reverse)`` from a causal-only
    ``conv(x, weight, bias)``."""

    def causal_conv1d_silu(x, weight, bias, reverse):
        if not reverse:
            return conv(x, weight, bias)
        return conv(x.flip(-1), weight, bias).flip(-1)

    return causal_conv1d_silu
