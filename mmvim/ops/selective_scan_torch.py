"""Portable selective scan: exact, chunked, with a hand-written backward.

The recurrence, per channel d and state n, is

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t,   y_t = <C_t, h_t> + D * u_t

A plain loop over t costs a few small tensor ops per token (slow, and autograd
through it is slower still). Here the sequence is cut into chunks of T tokens;
inside a chunk the recurrence is solved in closed form with two cumulative sums,

    h_t = exp(c_t) * (h_start + sum_{s<=t} exp(-c_s) * x_s),   c_t = sum_{r<=t} dt_r A,

and a short loop carries the state from chunk to chunk. ``exp(-c_s)`` grows with
the decay accumulated inside a chunk, so T is chosen per call such that it stays
below ``exp(MAX_CHUNK_LOG_DECAY)``: no overflow whatever the sequence length, and
exact (T = 1 is the plain recurrence).

The backward pass keeps only the inputs and the state at each chunk boundary
((B, D, L/T, N) instead of (B, D, L, N)); it walks the chunks backwards,
recomputing each chunk's states and solving the adjoint recurrence the same way.
The state is computed in float32 (float64 for float64 inputs) whatever the
input dtype.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F

# Largest within-chunk decay exponent allowed: exp(60) ~ 1e26 fits float32.
MAX_CHUNK_LOG_DECAY = 60.0
MAX_CHUNK_LEN = 64


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _chunk_len(dt: torch.Tensor, A: torch.Tensor) -> int:
    """Longest chunk whose accumulated decay cannot overflow exp()."""
    step = float(dt.amax()) * float(A.abs().amax()) if dt.numel() else 0.
    if not math.isfinite(step):
        return 1
    if step * MAX_CHUNK_LEN <= MAX_CHUNK_LOG_DECAY:
        return MAX_CHUNK_LEN
    return max(1, int(MAX_CHUNK_LOG_DECAY // step))


class _Prepared:
    """The scan's inputs in the compute dtype, laid out token-major.

    Per-token tensors are (b, g, l, d/g): the d channels split into the g
    groups that share B and C; B and C are (b, g, l, n). Chunk tensors are
    then (b, g, T, d/g, n), so the readout <C_t, h_t> and the sums over d or
    n are batched matrix products without copies.
    """

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        dtype = _compute_dtype(u)
        batch, channels, length = u.shape
        self.groups = 1 if B.dim() == 3 else B.shape[1]
        self.length = length

        self.dtype = dtype
        self.u = self.token_major(u)
        pre = delta.to(dtype)
        if delta_bias is not None:
            pre = pre + delta_bias.to(dtype)[:, None]
        self.dt_pre = self.token_major(pre)
        self.dt = F.softplus(self.dt_pre) if delta_softplus else self.dt_pre
        self.dtu = self.dt * self.u
        self.A = A.to(dtype).view(self.groups, 1, -1, A.shape[-1])
        self.B = B.to(dtype).view(batch, self.groups, -1,
                                  length).transpose(-1, -2)
        self.C = C.to(dtype).view(batch, self.groups, -1,
                                  length).transpose(-1, -2)
        self.D = None if D is None else D.to(dtype).view(self.groups, 1, -1)
        self.z = None if z is None else self.token_major(z)

    def token_major(self, tensor):
        """(b, d, l) -> (b, g, l, d/g) in the compute dtype."""
        batch, _, length = tensor.shape
        return tensor.to(self.dtype).view(batch, self.groups, -1,
                                          length).transpose(-1, -2)

    def chunks(self, step):
        return [(start, min(start + step, self.length))
                for start in range(0, self.length, step)]

    def decay_exp(self, start, stop):
        """exp(c_t), c_t = A * sum of dt over the chunk's tokens so far."""
        cum_dt = self.dt[:, :, start:stop].cumsum(2)
        return torch.exp(cum_dt.unsqueeze(-1) * self.A)

    def inputs(self, start, stop):
        """x_t = dt_t * u_t * B_t: (b, g, T, d/g, n)."""
        return (self.dtu[:, :, start:stop, :, None] *
                self.B[:, :, start:stop, None, :])

    def states(self, h_start, growth, inputs):
        """h_t = exp(c_t) * (h_start + sum_{s<=t} x_s / exp(c_s))."""
        scaled = inputs / growth
        scaled[:, :, 0] += h_start
        return growth * scaled.cumsum(2)

    def readout(self, states, start, stop):
        """<C_t, h_t>: (b, g, T, d/g)."""
        return torch.matmul(states,
                            self.C[:, :, start:stop, :, None]).squeeze(-1)

    def skip(self):
        return 0 if self.D is None else self.D * self.u

    def to_channels(self, tensor, like):
        """(b, g, l, d/g) -> (b, d, l) in the dtype of ``like``."""
        return tensor.transpose(-1, -2).reshape(like.shape).to(like.dtype)


class SelectiveScanFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        with torch.autocast(u.device.type, enabled=False):
            prep = _Prepared(u, delta, A, B, C, D, z, delta_bias,
                             delta_softplus)
            step = _chunk_len(prep.dt, prep.A)
            h = prep.u.new_zeros(prep.u.shape[:2] + prep.A.shape[-2:])
            boundaries = []
            y = torch.empty_like(prep.u)
            for start, stop in prep.chunks(step):
                boundaries.append(h)
                states = prep.states(h, prep.decay_exp(start, stop),
                                     prep.inputs(start, stop))
                y[:, :, start:stop] = prep.readout(states, start, stop)
                h = states[:, :, -1]
            y = y + prep.skip()
            if prep.z is not None:
                y = y * F.silu(prep.z)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias,
                              torch.stack(boundaries))
        ctx.delta_softplus = delta_softplus
        ctx.step = step
        return prep.to_channels(y, u)

    @staticmethod
    def backward(ctx, grad_out):
        (u, delta, A, B, C, D, z, delta_bias,
         boundaries) = ctx.saved_tensors
        with torch.autocast(u.device.type, enabled=False):
            grads = _selective_scan_backward(u, delta, A, B, C, D, z,
                                             delta_bias, ctx.delta_softplus,
                                             ctx.step, boundaries, grad_out)
        return (*grads, None)


def _selective_scan_backward(u, delta, A, B, C, D, z, delta_bias,
                             delta_softplus, step, boundaries, grad_out):
    """Walk the chunks backwards, recomputing each chunk's states from its
    boundary and solving the adjoint recurrence

        lambda_t = C_t g_t + exp(dt_{t+1} A) lambda_{t+1}

    in closed form like the forward one."""
    prep = _Prepared(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    grad_gated = prep.token_major(grad_out)
    grad_y = grad_gated if prep.z is None else grad_gated * F.silu(prep.z)
    grad_dt = torch.empty_like(prep.u)
    grad_u = torch.empty_like(prep.u)
    grad_B = torch.empty_like(prep.B)
    grad_C = torch.empty_like(prep.C)
    grad_A = torch.zeros_like(prep.A)
    y_scan = torch.empty_like(prep.u) if prep.z is not None else None
    carry = torch.zeros_like(boundaries[0])
    chunks = prep.chunks(step)
    for index in reversed(range(len(chunks))):
        start, stop = chunks[index]
        growth = prep.decay_exp(start, stop)
        inputs = prep.inputs(start, stop)
        states = prep.states(boundaries[index], growth, inputs)
        g_y = grad_y[:, :, start:stop]
        if y_scan is not None:
            y_scan[:, :, start:stop] = prep.readout(states, start, stop)
        # Adjoint: lambda_t = sum_{s>=t} (e_s / e_t) C_s g_s
        #                     + (e_last / e_t) * carry.
        weighted = growth * (g_y[..., None] *
                             prep.C[:, :, start:stop, None, :])
        weighted[:, :, -1] += growth[:, :, -1] * carry
        adjoint = weighted.flip(2).cumsum(2).flip(2) / growth
        dt = prep.dt[:, :, start:stop]
        # exp(dt_t A) lambda_t, handed to the chunk before.
        carry = torch.exp(dt[:, :, 0, :, None] * prep.A[:, 0]) * adjoint[:, :,
                                                                           0]
        # d/d(dt_t A) = lambda_t * exp(dt_t A) h_{t-1} = lambda_t (h_t - x_t)
        grad_decay = adjoint * (states - inputs)
        adjoint_B = torch.matmul(adjoint,
                                 prep.B[:, :, start:stop, :, None]).squeeze(-1)
        grad_dt[:, :, start:stop] = ((grad_decay * prep.A).sum(-1) +
                                     adjoint_B * prep.u[:, :, start:stop])
        grad_u[:, :, start:stop] = adjoint_B * dt
        grad_A += (grad_decay * dt[..., None]).sum((0, 2)).unsqueeze(1)
        grad_B[:, :, start:stop] = torch.matmul(
            prep.dtu[:, :, start:stop, None, :], adjoint).squeeze(-2)
        grad_C[:, :, start:stop] = torch.matmul(g_y[..., None, :],
                                                states).squeeze(-2)
    grad_D = grad_z = grad_bias = None
    if prep.D is not None:
        grad_u = grad_u + grad_y * prep.D
        grad_D = (grad_y * prep.u).sum((0, 2)).reshape(D.shape).to(D.dtype)
    if prep.z is not None:
        sig = torch.sigmoid(prep.z)
        grad_z = prep.to_channels(
            grad_gated * (y_scan + prep.skip()) * sig *
            (1 + prep.z * (1 - sig)), z)
    grad_pre = grad_dt * torch.sigmoid(prep.dt_pre) if delta_softplus \
        else grad_dt
    if delta_bias is not None:
        grad_bias = grad_pre.sum((0, 2)).reshape(delta_bias.shape).to(
            delta_bias.dtype)
    return (prep.to_channels(grad_u, u), prep.to_channels(grad_pre, delta),
            grad_A.reshape(A.shape).to(A.dtype),
            prep.to_channels(grad_B, B), prep.to_channels(grad_C, C), grad_D,
            grad_z, grad_bias)


def selective_scan_torch(u: torch.Tensor,
                         delta: torch.Tensor,
                         A: torch.Tensor,
                         B: torch.Tensor,
                         C: torch.Tensor,
                         D: Optional[torch.Tensor] = None,
                         z: Optional[torch.Tensor] = None,
                         delta_bias: Optional[torch.Tensor] = None,
                         delta_softplus: bool = False) -> torch.Tensor:
    """Portable selective scan with mamba-ssm's ``selective_scan_fn`` interface.

    u, delta, z: (b, d, l); A: (d, n); B, C: (b, n, l), or (b, g, n, l) with
    the d channels split into g groups that share B and C; D, delta_bias: (d,).
    Returns (b, d, l) in u's dtype.
    """
    return SelectiveScanFunction.apply(u, delta, A, B, C, D, z, delta_bias,
                                       delta_softplus)


def selective_scan_sequential(u, delta, A, B, C, D=None, z=None,
                              delta_bias=None, delta_softplus=False):
    """The plain token-by-token loop with the reference's semantics.

    Kept as the ground truth for tests and as the baseline of the benchmark;
    its backward is autograd through the loop.
    """
    dtype, out_dtype = _compute_dtype(u), u.dtype
    u, delta, A = u.to(dtype), delta.to(dtype), A.to(dtype)
    B, C = B.to(dtype), C.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, channels, length = u.shape
    groups = 1 if B.dim() == 3 else B.shape[1]
    B = B.view(batch, groups, 1, -1, length).expand(
        -1, -1, channels // groups, -1, -1).reshape(batch, channels, -1,
                                                    length)
    C = C.view(batch, groups, 1, -1, length).expand(
        -1, -1, channels // groups, -1, -1).reshape(batch, channels, -1,
                                                    length)
    decay = torch.exp(delta[..., None] * A[:, None, :])  # (b, d, l, n)
    inputs = (delta * u)[..., None] * B.transpose(-1, -2)
    h = u.new_zeros(batch, channels, A.shape[-1])
    ys = []
    for t in range(length):
        h = decay[:, :, t] * h + inputs[:, :, t]
        ys.append((h * C[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(out_dtype)
