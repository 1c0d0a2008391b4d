"""The Triton selective scan as an autograd Function: launches and the
deterministic reductions of the per-block partial gradients."""
import contextlib
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from .interpreter import speed_up_interpreted_scans
from .kernels import selective_scan_bwd_kernel, selective_scan_fwd_kernel


class Tiles(NamedTuple):
    """Channels per program (forward, backward) and tokens scanned in
    parallel per step: a few (block_d, N, chunk) tiles per program."""
    forward_block_d: int
    backward_block_d: int
    chunk: int


# On a GPU the tiles live in registers; these keep them there without
# spilling at Vim's N = 16 (ptxas for sm_90, bf16 inputs: forward 16 x 16 x
# 16 at 8 warps 100 registers a thread, backward 8 x 16 x 16 at 4 warps
# 168). Not timed: no GPU was at hand when they were chosen (docs/triton.md).
GPU_TILES = Tiles(forward_block_d=16, backward_block_d=8, chunk=16)
# The interpreter pays per tile operation, not per element: large tiles run
# the golden-file model ~20x faster there.
INTERPRETER_TILES = Tiles(forward_block_d=128, backward_block_d=128,
                          chunk=32)


def interpreting() -> bool:
    """Whether the kernels run in Triton's CPU interpreter: triton decides
    when they are defined, from TRITON_INTERPRET at that moment."""
    return isinstance(selective_scan_fwd_kernel, InterpretedFunction)


def _autotuned(kernel):
    # The interpreter cannot time configs (it needs a driver): one there.
    warps = (1, ) if interpreting() else (4, 8)
    return triton.autotune(
        configs=[triton.Config({}, num_warps=w) for w in warps],
        key=['group_channels', 'D_STATE', 'HAS_Z', 'DELTA_SOFTPLUS'])(kernel)


if interpreting():
    speed_up_interpreted_scans()
_forward_kernel = _autotuned(selective_scan_fwd_kernel)
_backward_kernel = _autotuned(selective_scan_bwd_kernel)
TILES = INTERPRETER_TILES if interpreting() else GPU_TILES


def _device_of(tensor):
    """Launch on the tensor's GPU, not the current one."""
    if tensor.is_cuda:
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()


class _Launch:
    """Arguments both kernels share, from the forward's inputs."""

    def __init__(self, block_d, chunk, u, delta, A, B, C, D, z, delta_bias,
                 delta_softplus, forward_groups):
        self.batch, self.channels, self.length = u.shape
        self.groups, self.d_state = B.shape[1], B.shape[2]
        self.group_channels = self.channels // self.groups
        self.block_n = triton.next_power_of_2(self.d_state)
        self.block_d = min(block_d,
                           triton.next_power_of_2(self.group_channels))
        self.num_chunks = triton.cdiv(self.length, chunk)
        self.compute_dtype = torch.float64 if u.dtype == torch.float64 \
            else torch.float32
        self.z_channels = self.channels if z is None else z.shape[1]
        self.grid = (self.batch, self.groups,
                     triton.cdiv(self.group_channels, self.block_d))
        # Absent optional tensors: any valid pointer, never read.
        self.pointers = (u, delta, A, B, C, u if D is None else D,
                         u if z is None else z,
                         u if delta_bias is None else delta_bias)
        self.strides = (*u.stride(), *delta.stride(), *A.stride(),
                        *B.stride(), *C.stride(),
                        *(u if z is None else z).stride())
        self.flags = dict(
            D_STATE=self.d_state, BLOCK_N=self.block_n,
            BLOCK_D=self.block_d, CHUNK=chunk, HAS_D=D is not None,
            HAS_Z=z is not None, HAS_DELTA_BIAS=delta_bias is not None,
            DELTA_SOFTPLUS=bool(delta_softplus),
            COMPUTE=tl.float64 if self.compute_dtype == torch.float64 else
            tl.float32)
        self.forward_groups = forward_groups

    def sizes(self):
        return (self.length, self.group_channels, self.num_chunks,
                self.z_channels)

    def new(self, like, *shape, dtype=None):
        return torch.empty(shape, dtype=dtype or self.compute_dtype,
                           device=like.device)


class SelectiveScanTriton(torch.autograd.Function):
    """The scan of B, C grouped (b, g, n, l); the groups from
    ``forward_groups`` on scan from the last token to the first."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                forward_groups):
        tiles = TILES
        launch = _Launch(tiles.forward_block_d, tiles.chunk, u, delta, A, B,
                         C, D, z, delta_bias, delta_softplus, forward_groups)
        y = torch.empty(u.shape, dtype=u.dtype, device=u.device)
        states = launch.new(u, launch.batch, launch.channels,
                            launch.num_chunks, launch.block_n)
        with _device_of(u):
            _forward_kernel[launch.grid](*launch.pointers, y, states,
                                         *launch.sizes(), *launch.strides,
                                         *y.stride(), forward_groups,
                                         **launch.flags)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        ctx.tiles = tiles
        ctx.options = (delta_softplus, forward_groups)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        launch = _Launch(ctx.tiles.backward_block_d, ctx.tiles.chunk, u,
                         delta, A, B, C, D, z, delta_bias, *ctx.options)
        batch, channels, length = u.shape
        grad_u = torch.empty(u.shape, dtype=u.dtype, device=u.device)
        grad_delta = torch.empty(delta.shape, dtype=delta.dtype,
                                 device=u.device)
        # One row per scanned channel: both directions of a shared z add.
        # Without z the kernel writes none: any pointer does.
        grad_z_rows = grad_u if z is None else launch.new(
            u, batch, channels, length)
        grad_A_rows = launch.new(u, batch, channels, launch.d_state)
        grad_D_rows = launch.new(u, batch, channels)
        grad_bias_rows = launch.new(u, batch, channels)
        partial = (batch, launch.groups, launch.grid[2], launch.d_state,
                   length)
        grad_B_parts = launch.new(u, *partial)
        grad_C_parts = launch.new(u, *partial)
        with _device_of(u):
            _backward_kernel[launch.grid](
                *launch.pointers, states, grad_y, grad_u, grad_delta,
                grad_z_rows, grad_A_rows, grad_B_parts, grad_C_parts,
                grad_D_rows, grad_bias_rows, *launch.sizes(),
                *launch.strides, *grad_y.stride(), launch.forward_groups,
                **launch.flags)
        grad_z = None
        if z is not None:
            grad_z = grad_z_rows.view(batch, -1, z.shape[1],
                                      length).sum(1).to(z.dtype)
        return (grad_u, grad_delta, grad_A_rows.sum(0).to(A.dtype),
                grad_B_parts.sum(2).to(B.dtype),
                grad_C_parts.sum(2).to(C.dtype),
                None if D is None else grad_D_rows.sum(0).to(D.dtype), grad_z,
                None if delta_bias is None else grad_bias_rows.sum(0).to(
                    delta_bias.dtype), None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, bidirectional=False):
    """The selective scan with mamba-ssm's ``selective_scan_fn`` arguments
    (checked by :mod:`mmvim.ops.mamba_ops`).

    ``bidirectional``: B, C (b, g, n, l) with g even; the channels of the
    last g/2 groups scan from the last token to the first, and z (b, d/2, l)
    gates both halves.
    """
    grouped_B = B.reshape(B.shape[0], -1, *B.shape[-2:])
    grouped_C = C.reshape(grouped_B.shape)
    groups = grouped_B.shape[1]
    return SelectiveScanTriton.apply(u, delta, A, grouped_B, grouped_C, D,
                                     z, delta_bias, delta_softplus,
                                     groups // 2 if bidirectional else groups)
