"""The Triton selective scan as the operator pair
``mmvim::selective_scan_triton`` / ``..._backward``
(``torch.library.triton_op``): launches and the deterministic reductions of
the per-block partial gradients."""
import contextlib
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor
import triton
import triton.language as tl
from torch.library import wrap_triton
from triton.runtime.interpreter import InterpretedFunction

from ..library import (SavedStates, compute_dtype, define_scan_operators,
                       empty_in_layout_of, forward_outputs, full_delta,
                       no_gradient)
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
                 delta_softplus, reverse_from):
        self.batch, self.channels, self.length = u.shape
        self.groups, self.d_state = B.shape[1], B.shape[2]
        self.group_channels = self.channels // self.groups
        self.block_n = triton.next_power_of_2(self.d_state)
        self.block_d = min(block_d,
                           triton.next_power_of_2(self.group_channels))
        self.num_chunks = triton.cdiv(self.length, chunk)
        self.compute_dtype = compute_dtype(u.dtype)
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
        # The groups from here on scan from the last token to the first.
        self.forward_groups = reverse_from // self.group_channels

    def sizes(self):
        return (self.length, self.group_channels, self.num_chunks,
                self.z_channels)

    def new(self, like, *shape, dtype=None):
        return torch.empty(shape, dtype=dtype or self.compute_dtype,
                           device=like.device)


# The forward saves the state at the start of every chunk of TILES.chunk
# tokens, BLOCK_N (the next power of two of d_state) wide.
SAVED = SavedStates(chunk_length=lambda length: TILES.chunk,
                    width=triton.next_power_of_2)


# triton_op infers its schema from the annotations (the same as
# library.SCHEMAS; a test compares them).
def scan_forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                 D: Optional[Tensor], z: Optional[Tensor],
                 delta_bias: Optional[Tensor], delta_softplus: bool,
                 reverse_from: int, delta_weight: Optional[Tensor],
                 average_directions: bool,
                 save_states: bool) -> Tuple[Tensor, Tensor]:
    """``mmvim::selective_scan_triton``: one launch for both directions
    (the kernel reads the full delta, writes both directions and every
    chunk's start state; the options then apply)."""
    delta = full_delta(delta, delta_weight, u.shape[1])
    launch = _Launch(TILES.forward_block_d, TILES.chunk, u, delta, A, B, C, D,
                     z, delta_bias, delta_softplus, reverse_from)
    y = empty_in_layout_of(u)
    states = launch.new(u, *SAVED.shape(u, A))
    with _device_of(u):
        wrap_triton(_forward_kernel)[launch.grid](
            *launch.pointers, y, states, *launch.sizes(), *launch.strides,
            *y.stride(), launch.forward_groups, **launch.flags)
    return forward_outputs(y, states, reverse_from, average_directions,
                           save_states)


def scan_backward(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Optional[Tensor], z: Optional[Tensor], delta_bias: Optional[Tensor],
    delta_softplus: bool, reverse_from: int, states: Tensor, grad_y: Tensor
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``mmvim::selective_scan_triton_backward``: the kernel writes per-row
    and per-program partial gradients, summed here in a fixed order."""
    launch = _Launch(TILES.backward_block_d, TILES.chunk, u, delta, A, B, C,
                     D, z, delta_bias, delta_softplus, reverse_from)
    batch, channels, length = u.shape
    grad_y = grad_y.to(u.dtype)
    grad_u = torch.empty(u.shape, dtype=u.dtype, device=u.device)
    grad_delta = torch.empty(delta.shape, dtype=delta.dtype, device=u.device)
    # One row per scanned channel: both directions of a shared z add.
    # Without z the kernel writes none: any pointer does.
    grad_z_rows = grad_u if z is None else launch.new(
        u, batch, channels, length)
    grad_A_rows = launch.new(u, batch, channels, launch.d_state)
    grad_D_rows = launch.new(u, batch, channels)
    grad_bias_rows = launch.new(u, batch, channels)
    partial = (batch, launch.groups, launch.grid[2], launch.d_state, length)
    grad_B_parts = launch.new(u, *partial)
    grad_C_parts = launch.new(u, *partial)
    with _device_of(u):
        wrap_triton(_backward_kernel)[launch.grid](
            *launch.pointers, states, grad_y, grad_u, grad_delta,
            grad_z_rows, grad_A_rows, grad_B_parts, grad_C_parts,
            grad_D_rows, grad_bias_rows, *launch.sizes(), *launch.strides,
            *grad_y.stride(), launch.forward_groups, **launch.flags)

    def summed(rows, like, dim=0):
        return no_gradient(u) if like is None else rows.sum(dim).to(
            like.dtype)

    grad_z = no_gradient(u) if z is None else grad_z_rows.view(
        batch, -1, z.shape[1], length).sum(1).to(z.dtype)
    return (grad_u, grad_delta, summed(grad_A_rows, A),
            summed(grad_B_parts, B, 2), summed(grad_C_parts, C, 2),
            summed(grad_D_rows, D), grad_z, summed(grad_bias_rows,
                                                     delta_bias))


# A triton_op's body is its fake implementation and what Inductor inlines:
# on a GPU the launches are wrap_triton nodes. Interpreted kernels (CPU
# tensors, CI) cannot be traced, so there the operator is an opaque
# custom_op with the same schema and the common fake implementation.
define_scan_operators('triton', scan_forward, scan_backward, SAVED,
                      triton=not interpreting())
