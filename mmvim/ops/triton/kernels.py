"""Triton kernels of the selective scan, forward and backward.

One program scans one block of ``BLOCK_D`` channels of one batch row, all in
one B/C group, over the whole sequence: sequentially over chunks of
``CHUNK`` tokens, with a parallel scan (``tl.associative_scan``) of the
(BLOCK_D, N, CHUNK) tile of decays and inputs inside each chunk. The state
(BLOCK_D, N) is float32 (float64 for float64 inputs) and carried from chunk
to chunk in registers; the forward stores it at the start of every chunk,
the only state that reaches memory ((b, d, chunks, N), never (b, d, l, N)).

A program of a group at or past ``FORWARD_GROUPS`` scans from the last token
to the first: its step s reads and writes token ``L - 1 - s``. That is how
both directions of a Vim layer run in one launch with nothing flipped.

The decay is ``exp2(dt * A * log2(e))``: A is scaled once per program.
"""
import triton
import triton.language as tl

# Globals a kernel reads must be constexpr.
LOG2E = tl.constexpr(1.4426950408889634)
# torch.nn.functional.softplus's default: above it softplus(x) is x.
SOFTPLUS_THRESHOLD = tl.constexpr(20.)


@triton.jit
def _linear_recurrence(decay_left, input_left, decay_right, input_right):
    """Combine two steps of h = a h + x: first left, then right."""
    return decay_left * decay_right, decay_right * input_left + input_right


@triton.jit
def _token_offsets(step, length, reverse):
    """Token index of scan step ``step`` (reverse is 0 or 1)."""
    return step + reverse * (length - 1 - 2 * step)


@triton.jit
def _time_step(delta_ptrs, mask, bias, HAS_DELTA_BIAS: tl.constexpr,
               DELTA_SOFTPLUS: tl.constexpr, COMPUTE: tl.constexpr):
    """(dt, dt before the softplus), both zero where ``mask`` is off: a
    padded token then decays by exp2(0) = 1 and adds nothing."""
    dt_raw = tl.load(delta_ptrs, mask=mask, other=0.).to(COMPUTE)
    if HAS_DELTA_BIAS:
        dt_raw = dt_raw + bias[:, None]
    if DELTA_SOFTPLUS:
        dt = tl.where(
            dt_raw > SOFTPLUS_THRESHOLD, dt_raw,
            tl.log(1. + tl.exp(tl.minimum(dt_raw, SOFTPLUS_THRESHOLD))))
    else:
        dt = dt_raw
    return tl.where(mask, dt, 0.), dt_raw


@triton.jit
def _chunk_states(start, dt, dtu, A2, B):
    """States h_t of one chunk from its start state, and the inputs x_t.

    start, A2: (BLOCK_D, N); dt, dtu: (BLOCK_D, T); B: (N, T). Returns
    (BLOCK_D, N, T) tensors.
    """
    decays = tl.exp2(dt[:, None, :] * A2[:, :, None])
    inputs = dtu[:, None, :] * B[None, :, :]
    decay_products, zero_start_states = tl.associative_scan(
        (decays, inputs), 2, _linear_recurrence)
    return decay_products * start[:, :, None] + zero_start_states, inputs


@triton.jit
def _column(tile, steps, index):
    """tile[:, :, index] of a (BLOCK_D, N, T) tile."""
    return tl.sum(tl.where(steps[None, None, :] == index, tile, 0.), axis=2)


@triton.jit
def _program_setup(states_ptr, A_ptr, D_ptr, bias_ptr, num_chunks,
                   group_channels, FORWARD_GROUPS, stride_A_d, stride_A_n,
                   D_STATE: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_D: tl.constexpr, CHUNK: tl.constexpr,
                   HAS_D: tl.constexpr, HAS_DELTA_BIAS: tl.constexpr,
                   COMPUTE: tl.constexpr):
    """What the forward and backward programs both start from: the
    program's batch row and group, its channels and states with their
    masks, its direction (0 forward, 1 reverse), its row of the (b, d)
    channel layout, the pointers to its chunk-start states ((b, d, chunks,
    BLOCK_N)), a chunk's step offsets, and its A (BLOCK_D, N), A log2(e), D
    and delta bias (BLOCK_D, ) in the compute dtype (D and the bias are 0
    when absent)."""
    batch = tl.program_id(0)
    group = tl.program_id(1)
    in_group = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    channel_mask = in_group < group_channels
    channels = group * group_channels + in_group
    states = tl.arange(0, BLOCK_N)
    state_mask = states < D_STATE
    reverse = (group >= FORWARD_GROUPS).to(tl.int32)
    row = batch * group_channels * tl.num_programs(1) + channels
    state_ptrs = states_ptr + (row[:, None] * num_chunks) * BLOCK_N + \
        states[None, :]
    A = tl.load(A_ptr + channels[:, None] * stride_A_d +
                states[None, :] * stride_A_n,
                mask=channel_mask[:, None] & state_mask[None, :],
                other=0.).to(COMPUTE)
    skip = tl.zeros([BLOCK_D], dtype=COMPUTE)
    if HAS_D:
        skip = tl.load(D_ptr + channels, mask=channel_mask).to(COMPUTE)
    bias = tl.zeros([BLOCK_D], dtype=COMPUTE)
    if HAS_DELTA_BIAS:
        bias = tl.load(bias_ptr + channels, mask=channel_mask).to(COMPUTE)
    return (batch, group, channels, channel_mask, states, state_mask,
            reverse, row, state_ptrs, tl.arange(0, CHUNK), A, A * LOG2E,
            skip, bias)


@triton.jit
def _load_tile(ptr, rows, stride_rows, tokens, stride_tokens, mask,
               COMPUTE: tl.constexpr):
    """The (rows, tokens) tile at ``ptr`` in the compute dtype, 0 where
    ``mask`` is off."""
    return tl.load(ptr + rows[:, None] * stride_rows +
                   tokens[None, :] * stride_tokens, mask=mask,
                   other=0.).to(COMPUTE)


@triton.jit
def _chunk_inputs(u_ptr, delta_ptr, B_ptr, C_ptr, step, length, reverse,
                  channels, channel_mask, states, state_mask, bias,
                  stride_u_d, stride_u_l, stride_delta_d, stride_delta_l,
                  stride_B_n, stride_B_l, stride_C_n, stride_C_l,
                  HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr,
                  COMPUTE: tl.constexpr):
    """What the scan reads at scan steps ``step`` of one chunk: the token
    indices, the (channel, token) and (state, token) masks, u, dt, dt
    before the softplus, B and C. The pointers are at the program's batch
    row (and group, for B and C)."""
    token_mask = step < length
    tokens = _token_offsets(step, length, reverse)
    tile_mask = channel_mask[:, None] & token_mask[None, :]
    bc_mask = state_mask[:, None] & token_mask[None, :]
    u = _load_tile(u_ptr, channels, stride_u_d, tokens, stride_u_l,
                   tile_mask, COMPUTE)
    dt, dt_raw = _time_step(
        delta_ptr + channels[:, None] * stride_delta_d +
        tokens[None, :] * stride_delta_l, tile_mask, bias, HAS_DELTA_BIAS,
        DELTA_SOFTPLUS, COMPUTE)
    B = _load_tile(B_ptr, states, stride_B_n, tokens, stride_B_l, bc_mask,
                   COMPUTE)
    C = _load_tile(C_ptr, states, stride_C_n, tokens, stride_C_l, bc_mask,
                   COMPUTE)
    return tokens, tile_mask, bc_mask, u, dt, dt_raw, B, C


@triton.jit
def selective_scan_fwd_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, y_ptr,
        states_ptr, length, group_channels, num_chunks, z_channels,
        stride_u_b, stride_u_d, stride_u_l, stride_delta_b, stride_delta_d,
        stride_delta_l, stride_A_d, stride_A_n, stride_B_b, stride_B_g,
        stride_B_n, stride_B_l, stride_C_b, stride_C_g, stride_C_n,
        stride_C_l, stride_z_b, stride_z_d, stride_z_l, stride_y_b,
        stride_y_d, stride_y_l, FORWARD_GROUPS, D_STATE: tl.constexpr,
        BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
        HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr,
        COMPUTE: tl.constexpr):
    (batch, group, channels, channel_mask, states, state_mask, reverse, row,
     state_ptrs, steps, A, A2, skip, bias) = _program_setup(
         states_ptr, A_ptr, D_ptr, bias_ptr, num_chunks, group_channels,
         FORWARD_GROUPS, stride_A_d, stride_A_n, D_STATE, BLOCK_N, BLOCK_D,
         CHUNK, HAS_D, HAS_DELTA_BIAS, COMPUTE)

    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=COMPUTE)
    for chunk in range(num_chunks):
        tl.store(state_ptrs + chunk * BLOCK_N, h,
                 mask=channel_mask[:, None])
        tokens, tile_mask, bc_mask, u, dt, _, B, C = _chunk_inputs(
            u_ptr + batch * stride_u_b, delta_ptr + batch * stride_delta_b,
            B_ptr + batch * stride_B_b + group * stride_B_g,
            C_ptr + batch * stride_C_b + group * stride_C_g,
            chunk * CHUNK + steps, length, reverse, channels, channel_mask,
            states, state_mask, bias, stride_u_d, stride_u_l, stride_delta_d,
            stride_delta_l, stride_B_n, stride_B_l, stride_C_n, stride_C_l,
            HAS_DELTA_BIAS, DELTA_SOFTPLUS, COMPUTE)
        hs, _ = _chunk_states(h, dt, dt * u, A2, B)
        y = tl.sum(hs * C[None, :, :], axis=1)
        if HAS_D:
            y += skip[:, None] * u
        if HAS_Z:
            z = _load_tile(z_ptr + batch * stride_z_b, channels % z_channels,
                           stride_z_d, tokens, stride_z_l, tile_mask, COMPUTE)
            y *= z * tl.sigmoid(z)
        tl.store(y_ptr + batch * stride_y_b + channels[:, None] * stride_y_d +
                 tokens[None, :] * stride_y_l,
                 y.to(y_ptr.dtype.element_ty), mask=tile_mask)
        # Padded steps decay by 1 and add 0: the last column is the state
        # after the chunk's last token.
        h = _column(hs, steps, CHUNK - 1)


@triton.jit
def selective_scan_bwd_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
        states_ptr, grad_y_ptr, grad_u_ptr, grad_delta_ptr, grad_z_ptr,
        grad_A_ptr, grad_B_ptr, grad_C_ptr, grad_D_ptr, grad_bias_ptr,
        length, group_channels, num_chunks, z_channels, stride_u_b,
        stride_u_d, stride_u_l, stride_delta_b, stride_delta_d,
        stride_delta_l, stride_A_d, stride_A_n, stride_B_b, stride_B_g,
        stride_B_n, stride_B_l, stride_C_b, stride_C_g, stride_C_n,
        stride_C_l, stride_z_b, stride_z_d, stride_z_l, stride_gy_b,
        stride_gy_d, stride_gy_l, FORWARD_GROUPS, D_STATE: tl.constexpr,
        BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
        HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr,
        COMPUTE: tl.constexpr):
    """Walks the chunks from the last scanned to the first; in each it
    recomputes the states from the saved chunk start and solves the adjoint
    lambda_t = C_t g_t + a_{t+1} lambda_{t+1} with a reverse parallel scan,
    the carry lambda of the next chunk's first step entering at its end.

    Per-token gradients (u, delta, z) are (b, d, l) in the compute dtype
    (z: one row per scanned channel, the caller adds the two directions'
    rows); B and C get one (N, l) partial sum per program, A (N,), D and
    the delta bias one per (batch, channel): the caller sums them in a fixed
    order, so the result is deterministic.
    """
    (batch, group, channels, channel_mask, states, state_mask, reverse, row,
     state_ptrs, steps, A, A2, skip, bias) = _program_setup(
         states_ptr, A_ptr, D_ptr, bias_ptr, num_chunks, group_channels,
         FORWARD_GROUPS, stride_A_d, stride_A_n, D_STATE, BLOCK_N, BLOCK_D,
         CHUNK, HAS_D, HAS_DELTA_BIAS, COMPUTE)
    delta_row_ptr = delta_ptr + batch * stride_delta_b
    # The partial dB, dC of this program: (b, g, blocks, N, l).
    partial_offset = ((batch * tl.num_programs(1) + group) *
                      tl.num_programs(2) + tl.program_id(2)) * D_STATE * length

    grad_A = tl.zeros([BLOCK_D, BLOCK_N], dtype=COMPUTE)
    grad_D = tl.zeros([BLOCK_D], dtype=COMPUTE)
    grad_bias = tl.zeros([BLOCK_D], dtype=COMPUTE)
    carry = tl.zeros([BLOCK_D, BLOCK_N], dtype=COMPUTE)
    for chunk_from_end in range(num_chunks):
        chunk = num_chunks - 1 - chunk_from_end
        step = chunk * CHUNK + steps
        tokens, tile_mask, bc_mask, u, dt, dt_raw, B, C = _chunk_inputs(
            u_ptr + batch * stride_u_b, delta_row_ptr,
            B_ptr + batch * stride_B_b + group * stride_B_g,
            C_ptr + batch * stride_C_b + group * stride_C_g, step, length,
            reverse, channels, channel_mask, states, state_mask, bias,
            stride_u_d, stride_u_l, stride_delta_d, stride_delta_l,
            stride_B_n, stride_B_l, stride_C_n, stride_C_l, HAS_DELTA_BIAS,
            DELTA_SOFTPLUS, COMPUTE)
        start = tl.load(state_ptrs + chunk * BLOCK_N,
                        mask=channel_mask[:, None], other=0.)
        dtu = dt * u
        hs, inputs = _chunk_states(start, dt, dtu, A2, B)

        grad_gated = _load_tile(grad_y_ptr + batch * stride_gy_b, channels,
                                stride_gy_d, tokens, stride_gy_l, tile_mask,
                                COMPUTE)
        grad_offsets = row[:, None] * length + tokens[None, :]
        if HAS_Z:
            z = _load_tile(z_ptr + batch * stride_z_b, channels % z_channels,
                           stride_z_d, tokens, stride_z_l, tile_mask, COMPUTE)
            y_scan = tl.sum(hs * C[None, :, :], axis=1)
            if HAS_D:
                y_scan += skip[:, None] * u
            gate = tl.sigmoid(z)
            tl.store(grad_z_ptr + grad_offsets,
                     grad_gated * y_scan * gate * (1. + z * (1. - gate)),
                     mask=tile_mask)
            grad_y = grad_gated * z * gate
        else:
            grad_y = grad_gated
        partial_ptrs = partial_offset + states[:, None] * length + \
            tokens[None, :]
        tl.store(grad_C_ptr + partial_ptrs,
                 tl.sum(hs * grad_y[:, None, :], axis=0), mask=bc_mask)
        # a_t h_{t-1} = h_t - x_t; the states are not needed after this.
        decayed_previous = hs - inputs

        # a_{t+1}: the decay of the next scan step, read one token further.
        next_step = step + 1
        next_mask = channel_mask[:, None] & (next_step < length)[None, :]
        dt_next, _ = _time_step(
            delta_row_ptr + channels[:, None] * stride_delta_d +
            _token_offsets(next_step, length, reverse)[None, :] *
            stride_delta_l, next_mask, bias, HAS_DELTA_BIAS, DELTA_SOFTPLUS,
            COMPUTE)
        next_decays = tl.exp2(dt_next[:, None, :] * A2[:, :, None])
        reach, adjoint = tl.associative_scan(
            (next_decays, grad_y[:, None, :] * C[None, :, :]), 2,
            _linear_recurrence, reverse=True)
        adjoint += reach * carry[:, :, None]
        carry = _column(adjoint, steps, 0)

        # d loss / d (dt_t A) = lambda_t a_t h_{t-1}.
        grad_log_decay = adjoint * decayed_previous
        grad_A += tl.sum(grad_log_decay * dt[:, None, :], axis=2)
        adjoint_B = tl.sum(adjoint * B[None, :, :], axis=1)
        grad_u = adjoint_B * dt
        if HAS_D:
            grad_u += grad_y * skip[:, None]
            grad_D += tl.sum(grad_y * u, axis=1)
        grad_dt = tl.sum(grad_log_decay * A[:, :, None], axis=1) + \
            adjoint_B * u
        if DELTA_SOFTPLUS:
            grad_dt = tl.where(dt_raw > SOFTPLUS_THRESHOLD, grad_dt,
                               grad_dt * tl.sigmoid(dt_raw))
        grad_dt = tl.where(tile_mask, grad_dt, 0.)
        grad_bias += tl.sum(grad_dt, axis=1)
        tl.store(grad_u_ptr + grad_offsets,
                 grad_u.to(grad_u_ptr.dtype.element_ty), mask=tile_mask)
        tl.store(grad_delta_ptr + grad_offsets,
                 grad_dt.to(grad_delta_ptr.dtype.element_ty), mask=tile_mask)
        tl.store(grad_B_ptr + partial_ptrs,
                 tl.sum(adjoint * dtu[:, None, :], axis=0), mask=bc_mask)

    tl.store(grad_A_ptr + row[:, None] * D_STATE + states[None, :], grad_A,
             mask=channel_mask[:, None] & state_mask[None, :])
    if HAS_D:
        tl.store(grad_D_ptr + row, grad_D, mask=channel_mask)
    if HAS_DELTA_BIAS:
        tl.store(grad_bias_ptr + row, grad_bias, mask=channel_mask)
