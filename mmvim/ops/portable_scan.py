"""Portable selective scan: exact, overflow-free, with a hand-written backward.

The recurrence, per channel d and state n, is

    h_t = a_t * h_{t-1} + x_t,   a_t = exp(dt_t * A),   x_t = dt_t * B_t * u_t,
    y_t = <C_t, h_t> + D * u_t.

A plain loop over the L tokens costs a few small tensor ops per token: slow,
and autograd through it is slower still. Here the sequence is cut into about
sqrt(L) chunks of about sqrt(L) tokens, and

1. the loop runs over the positions inside a chunk, each step updating every
   chunk at once (states from a zero start, plus the running decay products);
2. a loop over the chunks carries the true start state from chunk to chunk;
3. one fused update adds each chunk's start state, decayed, to its tokens.

That is about 2 sqrt(L) ops instead of 4 L, with the same multiply-adds as the
plain loop. Only decays a_t <= 1 are ever multiplied (no exp of a cumulative
sum), so nothing can overflow whatever the decay or the sequence length.

The backward pass keeps only the inputs and the chunk start states
((B, D, L/T, N), not (B, D, L, N)); it recomputes the states and solves the
adjoint recurrence  lambda_t = C_t g_t + a_{t+1} lambda_{t+1}  the same way,
backwards. The state is float32 (float64 for float64 inputs) whatever the
input dtype.
"""
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .flipping import FlippedDirections
from .library import (SavedStates, empty_in_layout_of, forward_outputs,
                      full_delta)


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _decay(log_decay: torch.Tensor) -> torch.Tensor:
    """exp() of a (negative) decay exponent, floored at exp(-80) in float32.

    Smaller factors would be subnormal numbers, which x86 CPUs process up to
    a hundred times slower; the floor changes no result representable in
    float32 (the decayed term is below 1e-34 of the state). float64 is
    floored below its own subnormal range.
    """
    floor = -700. if log_decay.dtype == torch.float64 else -80.
    return log_decay.clamp_(min=floor).exp_()


def _add_decayed(states, decays, starts, positions):
    """states[t] += (product of decays[s] for s up to t) * starts, in order.

    Adds each chunk's start state, decayed along the chunk, to its tokens:
    two cheap contiguous updates per position instead of a full tensor of
    decay products.
    """
    running = starts
    for t in positions:
        running = decays[:, :, t] * running
        states[:, :, t] += running


class _Prepared:
    """The scan's inputs in the compute dtype, laid out for chunking.

    Per-token tensors become (b, g, T, c, d/g): the d channels split into the
    g groups that share B and C, the L tokens (zero-padded: decay 1, input 0)
    into c chunks of T, position-major so that one position of every chunk
    is a contiguous slice. B and C are (b, g, T, c, n). Full state tensors
    are (b, g, T, c, d/g, n): the readout <C_t, h_t> and the sums over d or n
    are batched matrix products.
    """

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        self.dtype = _compute_dtype(u)
        self.groups = 1 if B.dim() == 3 else B.shape[1]
        self.length = u.shape[-1]
        self.chunk_len = max(1, math.isqrt(self.length))
        self.num_chunks = -(-self.length // self.chunk_len)
        self.u = self.chunked(u)
        pre = delta.to(self.dtype)
        if delta_bias is not None:
            pre = pre + delta_bias.to(self.dtype)[:, None]
        self.dt_pre = self.chunked(pre)
        self.dt = F.softplus(self.dt_pre) if delta_softplus else self.dt_pre
        self.dtu = self.dt * self.u
        self.A = A.to(self.dtype).view(self.groups, 1, 1, -1, A.shape[-1])
        self.B = self.chunked(B.reshape(B.shape[0], -1, self.length))
        self.C = self.chunked(C.reshape(C.shape[0], -1, self.length))
        self.D = None if D is None else D.to(self.dtype).view(
            self.groups, 1, 1, -1)
        self.z = None if z is None else self.chunked(z)

    def chunked(self, tensor):
        """(b, k, l) -> (b, g, T, c, k/g) in the compute dtype, zero-padded."""
        padding = self.num_chunks * self.chunk_len - self.length
        tensor = F.pad(tensor.to(self.dtype), (0, padding))
        batch = tensor.shape[0]
        return tensor.view(batch, self.groups, -1, self.num_chunks,
                           self.chunk_len).permute(0, 1, 4, 3,
                                                   2).contiguous()

    def unchunked(self, tensor, like):
        """Inverse of :meth:`chunked`, in the shape and dtype of ``like``."""
        batch = tensor.shape[0]
        flat = tensor.permute(0, 1, 4, 3, 2).reshape(batch, -1,
                                                     self.num_chunks *
                                                     self.chunk_len)
        return flat[..., :self.length].reshape(like.shape).to(like.dtype)

    def decays(self):
        """a_t = exp(dt_t A): (b, g, T, c, d/g, n)."""
        return _decay(self.dt[..., None] * self.A)

    def inputs(self):
        """x_t = dt_t u_t B_t: (b, g, T, c, d/g, n)."""
        return self.dtu[..., None] * self.B[..., None, :]

    def states(self, decays, starts=None):
        """All states h_t, in place of the inputs tensor.

        With ``starts`` (each chunk's true start state, (b, g, c, d/g, n)) the
        chunks are solved directly; without, the states from a zero start
        and the chunks' start states are returned.
        """
        states = self.inputs()
        if starts is not None:
            states[:, :, 0].addcmul_(decays[:, :, 0], starts)
        for t in range(1, self.chunk_len):
            states[:, :, t].addcmul_(decays[:, :, t], states[:, :, t - 1])
        if starts is not None:
            return states
        # Each chunk's whole decay a_0 ... a_{T-1} = exp(A * sum of its dt).
        chunk_decay = _decay(self.dt.sum(2)[..., None] * self.A[:, 0])
        carry = torch.zeros_like(states[:, :, 0, 0])
        starts = []
        for chunk in range(self.num_chunks):
            starts.append(carry)
            carry = torch.addcmul(states[:, :, -1, chunk],
                                  chunk_decay[:, :, chunk], carry)
        starts = torch.stack(starts, dim=2)
        _add_decayed(states, decays, starts, range(self.chunk_len))
        return states, starts

    def readout(self, states):
        """<C_t, h_t>: (b, g, T, c, d/g)."""
        return torch.matmul(states, self.C[..., None]).squeeze(-1)

    def skip(self):
        return 0 if self.D is None else self.D * self.u


# Bytes of one position's states over all chunks that a CPU block may hold.
# The scan's loops update that slice once per position; when it fits in a
# core's L2 cache (512 KiB on the AMD EPYC cores where this was tuned) they
# stop waiting on memory. Measured on one thread, against scanning whole
# tensors: Vim-Ti's 2 x 384 channels, 1025 tokens, forward + backward 1.8x
# faster at batch 1 and 3.2x at batch 4; 4097 tokens 1.9x.
CPU_BLOCK_BYTES = 512 * 1024


class _Block(NamedTuple):
    """A part of the scan solved on its own: batch rows, channels, B/C
    group."""
    rows: slice
    channels: slice
    group: int

    def inputs(self, u, delta, A, B, C, D, z, delta_bias):
        """The block's slices of the scan's arguments (B, C: (b, g, n, l))."""

        def per_channel(tensor):
            return None if tensor is None else tensor[self.channels]

        def per_token(tensor):
            return None if tensor is None else tensor[self.rows,
                                                      self.channels]

        if self.group < 0:
            bc = B[self.rows], C[self.rows]
        else:
            bc = B[self.rows, self.group], C[self.rows, self.group]
        return (per_token(u), per_token(delta), per_channel(A), *bc,
                per_channel(D), per_token(z), per_channel(delta_bias))


def _blocks(u, B):
    """How the scan of u (b, d, l) with B (b, g, n, l) is split.

    A GPU takes it whole (group -1: all groups at once). A CPU scans each
    B/C group on its own, in blocks whose states at one position fit in
    :data:`CPU_BLOCK_BYTES`: a group's channels split evenly when one batch
    row is too much, several batch rows together when they fit (short
    sequences, where each block's fixed cost of small ops would dominate).
    """
    batch, channels, length = u.shape
    groups = B.shape[1]
    if u.device.type != 'cpu':
        return [_Block(slice(None), slice(None), -1)]
    num_chunks = -(-length // max(1, math.isqrt(length)))
    bytes_per_channel = (num_chunks * B.shape[2] *
                         torch.finfo(_compute_dtype(u)).bits // 8)
    group_width = channels // groups
    num_splits = -(-group_width * bytes_per_channel // CPU_BLOCK_BYTES)
    width = -(-group_width // num_splits)
    rows = max(1, CPU_BLOCK_BYTES // (width * bytes_per_channel))
    blocks = []
    for first_row in range(0, batch, rows):
        for group in range(groups):
            end = (group + 1) * group_width
            for start in range(group * group_width, end, width):
                blocks.append(
                    _Block(slice(first_row, first_row + rows),
                           slice(start, min(start + width, end)), group))
    return blocks


def _scan_block(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Forward scan of one block: (y in the compute dtype, chunk starts)."""
    prep = _Prepared(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    states, starts = prep.states(prep.decays())
    y = prep.readout(states) + prep.skip()
    del states
    if prep.z is not None:
        y = y * F.silu(prep.z)
    return prep.unchunked(y, u), starts


def _block_states(starts):
    """A block's chunk starts (b, g, c, d/g, n) as rows of the backend's saved
    states (b, d, c, n)."""
    return starts.permute(0, 1, 3, 2, 4).flatten(1, 2)


def _block_starts(states, block, groups):
    """Inverse of :func:`_block_states` for ``block``'s part of ``states``,
    of a scan with ``groups`` B/C groups."""
    rows = states[block.rows, block.channels]
    block_groups = 1 if block.group >= 0 else groups
    return rows.unflatten(1, (block_groups, -1)).permute(0, 1, 3, 2, 4)


def scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                 reverse_from, delta_weight, average_directions, save_states):
    """``mmvim::selective_scan_torch``: (y, each chunk's start state
    (b, d, chunks, n)); the channels from ``reverse_from`` on are scanned on
    flipped copies."""
    delta = full_delta(delta, delta_weight, u.shape[1])
    flipped = FlippedDirections(u, B, reverse_from)
    inputs = flipped.inputs(u, delta, A, B, C, D, z, delta_bias)
    blocks = _blocks(inputs[0], inputs[3])
    y = torch.empty_like(inputs[0], memory_format=torch.contiguous_format)
    states = u.new_empty(PORTABLE_STATES.shape(u, A, save_states),
                         dtype=_compute_dtype(u))
    with torch.autocast(u.device.type, enabled=False):
        for block in blocks:
            y[block.rows, block.channels], starts = _scan_block(
                *block.inputs(*inputs), delta_softplus)
            if save_states:
                states[block.rows, block.channels] = _block_states(starts)
    output = empty_in_layout_of(u)
    output.copy_(flipped.restore(y))
    return forward_outputs(output, states, reverse_from, average_directions,
                           save_states)


def scan_backward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                  reverse_from, states, grad_y):
    """``mmvim::selective_scan_torch_backward``: every input's gradient."""
    flipped = FlippedDirections(u, B, reverse_from)
    inputs = flipped.inputs(u, delta, A, B, C, D, z, delta_bias)
    grad_y = flipped.restore(grad_y.to(u.dtype))
    # Per-token gradients are written block by block; per-channel ones and
    # those of the shared B and C are summed over the blocks.
    grads = [None if t is None else torch.zeros_like(
        t, memory_format=torch.contiguous_format) for t in inputs]
    with torch.autocast(u.device.type, enabled=False):
        for block in _blocks(inputs[0], inputs[3]):
            block_grads = _selective_scan_backward(
                *block.inputs(*inputs), delta_softplus,
                _block_starts(states, block, B.shape[1]),
                grad_y[block.rows, block.channels])
            for target, grad in zip(block.inputs(*grads), block_grads):
                if grad is not None:
                    target += grad
    return flipped.gradients(grads, u, delta, A, B, C, D, z, delta_bias)


def _selective_scan_backward(u, delta, A, B, C, D, z, delta_bias,
                             delta_softplus, starts, grad_out):
    prep = _Prepared(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    decays = prep.decays()
    states = prep.states(decays, starts)
    grad_gated = prep.chunked(grad_out)
    grad_y = grad_gated if prep.z is None else grad_gated * F.silu(prep.z)
    # Adjoint states lambda_t = C_t g_t + a_{t+1} lambda_{t+1}, solved like
    # the forward states: a reverse loop inside the chunks, then the carry
    # from each chunk's first token into the end of the chunk before.
    adjoint = grad_y[..., None] * prep.C[..., None, :]
    for t in range(prep.chunk_len - 2, -1, -1):
        adjoint[:, :, t].addcmul_(decays[:, :, t + 1], adjoint[:, :, t + 1])
    # a_1 ... a_{T-1}: how a chunk's end carry reaches its first token.
    reach_first = _decay(prep.dt[:, :, 1:].sum(2)[..., None] * prep.A[:, 0])
    carry = torch.zeros_like(starts[:, :, 0])
    ends = [None] * prep.num_chunks
    for chunk in reversed(range(prep.num_chunks)):
        ends[chunk] = carry
        first = torch.addcmul(adjoint[:, :, 0, chunk], reach_first[:, :,
                                                                    chunk],
                              carry)
        carry = decays[:, :, 0, chunk] * first
    # The carry enters at the last position and decays towards the first.
    shifted = torch.cat([decays[:, :, 1:],
                         torch.ones_like(decays[:, :, :1])], dim=2)
    _add_decayed(adjoint, shifted, torch.stack(ends, dim=2),
                 reversed(range(prep.chunk_len)))
    del shifted
    # d/d(dt_t A) = lambda_t a_t h_{t-1}
    previous = torch.empty_like(states)
    previous[:, :, 1:] = states[:, :, :-1]
    previous[:, :, 0] = starts
    grad_decay = adjoint * decays * previous
    del previous, decays
    adjoint_B = torch.matmul(adjoint, prep.B[..., None]).squeeze(-1)
    grad_dt = (grad_decay * prep.A).sum(-1) + adjoint_B * prep.u
    grad_u = adjoint_B * prep.dt
    grad_A = (grad_decay * prep.dt[..., None]).sum((0, 2, 3))
    grad_B = torch.matmul(prep.dtu[..., None, :], adjoint).squeeze(-2)
    grad_C = torch.matmul(grad_y[..., None, :], states).squeeze(-2)
    grad_D = grad_z = grad_bias = None
    if prep.D is not None:
        grad_u = grad_u + grad_y * prep.D
        grad_D = (grad_y * prep.u).sum((0, 2, 3)).reshape(D.shape).to(D.dtype)
    if prep.z is not None:
        y_scan = prep.readout(states) + prep.skip()
        sig = torch.sigmoid(prep.z)
        grad_z = prep.unchunked(
            grad_gated * y_scan * sig * (1 + prep.z * (1 - sig)), z)
    grad_pre = grad_dt * torch.sigmoid(prep.dt_pre) if delta_softplus \
        else grad_dt
    if delta_bias is not None:
        grad_bias = grad_pre.sum((0, 2, 3)).reshape(delta_bias.shape).to(
            delta_bias.dtype)
    return (prep.unchunked(grad_u, u), prep.unchunked(grad_pre, delta),
            grad_A.reshape(A.shape).to(A.dtype), prep.unchunked(grad_B, B),
            prep.unchunked(grad_C, C), grad_D, grad_z, grad_bias)


def _sequential(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """The plain token-by-token loop with the reference's semantics, one
    direction, B and C (b, g, n, l)."""
    dtype, out_dtype = _compute_dtype(u), u.dtype
    u, delta, A = u.to(dtype), delta.to(dtype), A.to(dtype)
    B, C = B.to(dtype), C.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, channels, length = u.shape
    groups = B.shape[1]
    B = B[:, :, None].expand(-1, -1, channels // groups, -1, -1).reshape(
        batch, channels, -1, length)
    C = C[:, :, None].expand(-1, -1, channels // groups, -1, -1).reshape(
        batch, channels, -1, length)
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


def sequential_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                       reverse_from, delta_weight, average_directions,
                       save_states):
    """``mmvim::selective_scan_sequential``: y, and no saved states (the
    backward runs the loop again). The ground truth of the other backends'
    outputs."""
    delta = full_delta(delta, delta_weight, u.shape[1])
    flipped = FlippedDirections(u, B, reverse_from)
    y = _sequential(*flipped.inputs(u, delta, A, B, C, D, z, delta_bias),
                    delta_softplus)
    output = empty_in_layout_of(u)
    output.copy_(flipped.restore(y))
    return forward_outputs(
        output, u.new_empty(SEQUENTIAL_STATES.shape(u, A),
                            dtype=_compute_dtype(u)), reverse_from,
        average_directions, save_states)


def sequential_backward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                        reverse_from, states, grad_y):
    """``mmvim::selective_scan_sequential_backward``: the adjoint token loop,
    with the forward's every state kept ((b, d, l, n): this is the reference,
    not the fast path). lambda_t = g_t C_t + a_{t+1} lambda_{t+1} is
    dL/dh_t; float64 gradchecks hold every backend's backward to the
    numbers."""
    flipped = FlippedDirections(u, B, reverse_from)
    u_, delta_, A_, B_, C_, D_, z_, bias_ = flipped.inputs(
        u, delta, A, B, C, D, z, delta_bias)
    dtype = _compute_dtype(u)
    batch, channels, length = u.shape
    groups = B.shape[1]
    u_, A_ = u_.to(dtype), A_.to(dtype)
    pre = delta_.to(dtype)
    if bias_ is not None:
        pre = pre + bias_.to(dtype)[:, None]
    dt = F.softplus(pre) if delta_softplus else pre

    def per_channel(bc):  # (b, g, n, l) -> (b, d, l, n)
        return bc.to(dtype).repeat_interleave(channels // groups, 1)\
            .transpose(-1, -2)

    B_, C_ = per_channel(B_), per_channel(C_)
    decay = torch.exp(dt[..., None] * A_[:, None, :])
    inputs = (dt * u_)[..., None] * B_
    h = torch.zeros_like(decay)
    for t in range(length):
        h[:, :, t] = inputs[:, :, t] + (
            decay[:, :, t] * h[:, :, t - 1] if t else 0)
    g = flipped.restore(grad_y.to(dtype))
    grad_z = None
    if z_ is not None:
        gate = z_.to(dtype)
        y = (h * C_).sum(-1) + (0 if D_ is None else D_.to(dtype)[:, None]
                                * u_)
        sig = torch.sigmoid(gate)
        grad_z = g * y * sig * (1 + gate * (1 - sig))
        g = g * gate * sig
    adjoint = torch.zeros_like(h)
    for t in reversed(range(length)):
        adjoint[:, :, t] = g[:, :, t, None] * C_[:, :, t] + (
            decay[:, :, t + 1] * adjoint[:, :, t + 1] if t + 1 < length
            else 0)
    previous = torch.cat([torch.zeros_like(h[:, :, :1]), h[:, :, :-1]], 2)
    grad_decay = adjoint * decay * previous  # dL/d(dt A)
    adjoint_B = (adjoint * B_).sum(-1)
    grad_dt = (grad_decay * A_[:, None, :]).sum(-1) + adjoint_B * u_
    grad_u = adjoint_B * dt + (0 if D_ is None else D_.to(dtype)[:, None] * g)
    grad_pre = grad_dt * torch.sigmoid(pre) if delta_softplus else grad_dt

    def per_group(grad):  # (b, d, l, n) summed over each group's channels
        return grad.unflatten(1, (groups, -1)).sum(2).transpose(-1, -2)

    grads = (grad_u, grad_pre, (grad_decay * dt[..., None]).sum((0, 2)),
             per_group(adjoint * (dt * u_)[..., None]),
             per_group(g[..., None] * h),
             None if D_ is None else (g * u_).sum((0, 2)), grad_z,
             None if bias_ is None else grad_pre.sum((0, 2)))
    return flipped.gradients(grads, u, delta, A, B, C, D, z, delta_bias)


# The portable scan saves the start state of each of its ~sqrt(l) chunks;
# the sequential loop saves nothing.
PORTABLE_STATES = SavedStates(
    chunk_length=lambda length: max(1, math.isqrt(length)))
SEQUENTIAL_STATES = SavedStates(chunk_length=lambda length: 0)
