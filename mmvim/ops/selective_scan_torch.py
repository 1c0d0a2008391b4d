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


def _grouped(tensor: torch.Tensor, groups: int) -> torch.Tensor:
    """(b, d, l) -> (b, g, d/g, l)."""
    b, d, length = tensor.shape
    return tensor.view(b, groups, d // groups, length)


def _states_in_chunk(h_start, decay_log, inputs):
    """States h_t of one chunk, from the state before it.

    h_start (..., n); decay_log, inputs (..., T, n) -> (..., T, n).
    """
    if decay_log.shape[-2] == 1:  # single step: the plain recurrence
        return (decay_log.exp() * h_start.unsqueeze(-2) + inputs)
    cum = decay_log.cumsum(-2)
    scaled = torch.cumsum(inputs * torch.exp(-cum), dim=-2)
    return cum.exp() * (h_start.unsqueeze(-2) + scaled)


def _adjoint_in_chunk(carry, decay_log, grads):
    """Adjoint states of one chunk, solved backwards.

    lambda_t = g_t + exp(a_{t+1}) lambda_{t+1}; ``carry`` is
    exp(a_T) lambda_T from the chunk after this one (zero at the end).
    """
    if decay_log.shape[-2] == 1:
        return grads + carry.unsqueeze(-2)
    cum = decay_log.cumsum(-2)
    weighted = grads * cum.exp()
    rev_cumsum = weighted.flip(-2).cumsum(-2).flip(-2)
    return torch.exp(-cum) * (rev_cumsum + cum[..., -1:, :].exp() *
                              carry.unsqueeze(-2))


class _Prepared:
    """Inputs cast to the compute dtype and viewed per group of channels."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        dtype = _compute_dtype(u)
        self.groups = 1 if B.dim() == 3 else B.shape[1]
        self.u = _grouped(u.to(dtype), self.groups)
        pre = delta.to(dtype)
        if delta_bias is not None:
            pre = pre + delta_bias.to(dtype)[:, None]
        self.dt_pre = _grouped(pre, self.groups)
        self.dt = F.softplus(self.dt_pre) if delta_softplus else self.dt_pre
        groups, per_group = self.groups, self.u.shape[2]
        self.A = A.to(dtype).view(groups, per_group, 1, -1)
        # B, C: (b, g, n, l) -> (b, g, l, n), shared by a group's channels.
        self.B = B.to(dtype).view(B.shape[0], groups, -1,
                                  B.shape[-1]).transpose(-1, -2)
        self.C = C.to(dtype).view(C.shape[0], groups, -1,
                                  C.shape[-1]).transpose(-1, -2)
        self.D = None if D is None else D.to(dtype).view(groups, per_group, 1)
        self.z = None if z is None else _grouped(z.to(dtype), groups)
        self.dtu = self.dt * self.u

    def chunk(self, start, stop):
        """decay exponents dt*A and inputs dt*B*u of tokens [start, stop)."""
        dt = self.dt[..., start:stop, None]
        decay_log = dt * self.A
        inputs = (self.dtu[..., start:stop, None] *
                  self.B[:, :, None, start:stop])
        return decay_log, inputs

    def readout(self, states, start, stop):
        """<C_t, h_t> for the tokens of a chunk."""
        return torch.einsum('bgdtn,bgtn->bgdt', states,
                            self.C[:, :, start:stop])

    def skip(self, start, stop):
        return 0 if self.D is None else self.D * self.u[..., start:stop]


class SelectiveScanFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        with torch.autocast(u.device.type, enabled=False):
            prep = _Prepared(u, delta, A, B, C, D, z, delta_bias,
                             delta_softplus)
            length = u.shape[-1]
            step = _chunk_len(prep.dt, prep.A)
            h = prep.u.new_zeros(prep.u.shape[:-1] + (A.shape[-1], ))
            starts = list(range(0, length, step))
            boundaries = []
            y = torch.empty_like(prep.u)
            for start in starts:
                stop = min(start + step, length)
                boundaries.append(h)
                decay_log, inputs = prep.chunk(start, stop)
                states = _states_in_chunk(h, decay_log, inputs)
                y[..., start:stop] = prep.readout(states, start, stop)
                h = states[..., -1, :]
            y = y + prep.skip(0, length)
            if prep.z is not None:
                y = y * F.silu(prep.z)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias,
                              torch.stack(boundaries))
        ctx.delta_softplus = delta_softplus
        ctx.step = step
        return y.flatten(1, 2).to(u.dtype)

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
    prep = _Prepared(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    length = u.shape[-1]
    grad_gated = _grouped(grad_out.to(prep.u.dtype), prep.groups)
    grad_y = grad_gated if prep.z is None else grad_gated * F.silu(prep.z)
    grad_z = None
    grad_dt = torch.zeros_like(prep.u)
    grad_u = torch.zeros_like(prep.u)
    grad_A = torch.zeros_like(prep.A)
    grad_B = torch.zeros_like(prep.B)
    grad_C = torch.zeros_like(prep.C)
    y_scan = torch.empty_like(prep.u) if prep.z is not None else None
    carry = torch.zeros_like(boundaries[0])
    starts = list(range(0, length, step))
    for index in reversed(range(len(starts))):
        start = starts[index]
        stop = min(start + step, length)
        h_start = boundaries[index]
        decay_log, inputs = prep.chunk(start, stop)
        states = _states_in_chunk(h_start, decay_log, inputs)
        g_y = grad_y[..., start:stop]
        if y_scan is not None:
            y_scan[..., start:stop] = prep.readout(states, start, stop)
        adjoint = _adjoint_in_chunk(
            carry, decay_log, g_y[..., None] * prep.C[:, :, None, start:stop])
        decay = decay_log.exp()
        carry = decay[..., 0, :] * adjoint[..., 0, :]
        previous = torch.cat([h_start.unsqueeze(-2), states[..., :-1, :]], -2)
        grad_decay_log = adjoint * decay * previous  # d/d(dt*A)
        adjoint_B = torch.einsum('bgdtn,bgtn->bgdt', adjoint,
                                 prep.B[:, :, start:stop])
        grad_dt[..., start:stop] = ((grad_decay_log * prep.A).sum(-1) +
                                    adjoint_B * prep.u[..., start:stop])
        grad_u[..., start:stop] = adjoint_B * prep.dt[..., start:stop]
        grad_A += torch.einsum('bgdtn,bgdt->gdn', grad_decay_log,
                               prep.dt[..., start:stop]).unsqueeze(2)
        grad_B[:, :, start:stop] = torch.einsum('bgdtn,bgdt->bgtn', adjoint,
                                                prep.dtu[..., start:stop])
        grad_C[:, :, start:stop] = torch.einsum('bgdtn,bgdt->bgtn', states,
                                                g_y)
    grad_D = None
    if prep.D is not None:
        grad_u = grad_u + grad_y * prep.D
        grad_D = (grad_y * prep.u).sum((0, 3)).reshape(D.shape).to(D.dtype)
    if prep.z is not None:
        y_scan = y_scan + prep.skip(0, length)
        sig = torch.sigmoid(prep.z)
        grad_z = grad_gated * y_scan * sig * (1 + prep.z * (1 - sig))
        grad_z = grad_z.flatten(1, 2).to(z.dtype)
    grad_pre = grad_dt * torch.sigmoid(prep.dt_pre) if delta_softplus \
        else grad_dt
    grad_bias = None
    if delta_bias is not None:
        grad_bias = grad_pre.sum((0, 3)).reshape(delta_bias.shape).to(
            delta_bias.dtype)
    return (grad_u.flatten(1, 2).to(u.dtype),
            grad_pre.flatten(1, 2).to(delta.dtype),
            grad_A.reshape(A.shape).to(A.dtype),
            grad_B.transpose(-1, -2).reshape(B.shape).to(B.dtype),
            grad_C.transpose(-1, -2).reshape(C.shape).to(C.dtype),
            grad_D, grad_z, grad_bias)


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
