"""Both directions of a Vim layer for implementations that only scan from the
first token to the last (the portable and sequential scans, mamba-ssm's
kernel): flip the reversed channels' inputs, scan, flip the results back.

This is what the reference mixer does; mmvim's own kernels (``cpu``,
``triton``) index in reverse instead and need none of these copies.
"""
import torch

from .library import no_gradient


class FlippedDirections:
    """The channels from ``reverse_from`` on of a scan of u (b, d, l) with B
    (b, g, n, l), and their B/C groups, in reversed token order."""

    def __init__(self, u: torch.Tensor, B: torch.Tensor, reverse_from: int):
        self.channels = u.shape[1]
        self.channel_start = reverse_from
        self.group_start = reverse_from // (u.shape[1] // B.shape[1])

    @staticmethod
    def flip(tensor: torch.Tensor, start: int) -> torch.Tensor:
        """``tensor`` with the entries from ``start`` on (dim 1) in reversed
        token order (last dim); the tensor itself when there are none."""
        if start >= tensor.shape[1]:
            return tensor
        return torch.cat([tensor[:, :start], tensor[:, start:].flip(-1)],
                         dim=1)

    def full_gate(self, z):
        """z (b, d, l), or (b, d/2, l) shared by channel c and c + d/2, as one
        gate row per channel."""
        if z is None or z.shape[1] == self.channels:
            return z
        return torch.cat([z, z], dim=1)

    def inputs(self, u, delta, A, B, C, D, z, delta_bias):
        """The scan's arguments with the reversed channels flipped."""
        per_token = [
            None if t is None else self.flip(t, self.channel_start)
            for t in (u, delta, self.full_gate(z))
        ]
        return (per_token[0], per_token[1], A,
                self.flip(B, self.group_start), self.flip(C, self.group_start),
                D, per_token[2], delta_bias)

    def restore(self, y: torch.Tensor) -> torch.Tensor:
        """A scan output (or a per-token gradient) back in token order."""
        return self.flip(y, self.channel_start)

    def gradients(self, grads, u, delta, A, B, C, D, z, delta_bias):
        """The gradients of the flipped inputs as the backward operators
        return them: in token order, z's folded where it is shared, each
        contiguous in its input's dtype, empty for absent inputs."""
        grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_z, \
            grad_bias = grads
        grad_u, grad_delta = self.restore(grad_u), self.restore(grad_delta)
        grad_B = self.flip(grad_B, self.group_start)
        grad_C = self.flip(grad_C, self.group_start)
        if grad_z is not None:
            grad_z = self.restore(grad_z)
            if z.shape[1] != self.channels:
                grad_z = grad_z.unflatten(1, (2, -1)).sum(1)
        return tuple(
            no_gradient(u) if like is None else grad.to(
                like.dtype).contiguous()
            for grad, like in zip((grad_u, grad_delta, grad_A, grad_B, grad_C,
                                   grad_D, grad_z, grad_bias),
                                  (u, delta, A, B, C, D, z, delta_bias)))
