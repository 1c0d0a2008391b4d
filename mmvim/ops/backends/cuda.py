"""The ``cuda`` backend: mamba-ssm's compiled CUDA selective scan, called
inside mmvim's own operators (``mmvim::selective_scan_cuda`` and its
backward; never through mamba-ssm's ``autograd.Function``, which
``torch.compile`` and ``torch.export`` cannot trace), with the portable conv
(cuDNN).

Only mamba-ssm's compiled module ``selective_scan_cuda`` is used. Its main
branch no longer builds it by default (``MAMBA_KEEP_CUDA_BUILD=TRUE`` brings it
back): ``import mamba_ssm`` then succeeds and the scan fails at its first
call, so :func:`check` looks for the compiled module itself.
"""
import importlib

from ..flipping import FlippedDirections
from ..library import (SavedStates, conv_operator, define_scan_operators,
                       empty_in_layout_of, forward_outputs, full_delta,
                       scan_operator)
from . import portable  # noqa: F401 - defines the portable conv operators

# mamba-ssm saves the (a, b) pair of every state at the end of each chunk of
# 2048 tokens ((b, d, chunks, 2n) float32), and needs the output before the
# gate, which its backward takes as an input: the backward recomputes it.
SAVED = SavedStates(chunk_length=lambda length: 2048,
                    width=lambda d_state: 2 * d_state)


def _kernels():
    """mamba-ssm's compiled scan module (ImportError saying what is
    missing)."""
    try:
        return importlib.import_module('selective_scan_cuda')
    except ImportError as error:
        raise ImportError(
            f'mamba-ssm\'s compiled scan (selective_scan_cuda) is missing: '
            f'{error}') from error


def check() -> None:
    """Raise with the reason the kernels cannot run here."""
    kernels = _kernels()
    for name in ('fwd', 'bwd'):
        if not hasattr(kernels, name):
            raise ImportError(f'selective_scan_cuda has no {name}(): an '
                              'unknown mamba-ssm build')


def _forward_arguments(u, delta, A, B, C, D, z, delta_bias, reverse_from):
    """The kernel's arguments: the reversed channels flipped, one gate row
    per channel, every tensor with a unit token stride as the kernel needs."""
    flipped = FlippedDirections(u, B, reverse_from)
    arguments = list(flipped.inputs(u, delta, A, B, C, D, z, delta_bias))
    for i in (0, 1, 3, 4, 6):
        if arguments[i] is not None and arguments[i].stride(-1) != 1:
            arguments[i] = arguments[i].contiguous()
    return flipped, arguments


def scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                 reverse_from, delta_weight, average_directions, save_states):
    delta = full_delta(delta, delta_weight, u.shape[1])
    flipped, arguments = _forward_arguments(u, delta, A, B, C, D, z,
                                            delta_bias, reverse_from)
    out, states, *gated = _kernels().fwd(*arguments, delta_softplus)
    y = empty_in_layout_of(u)
    y.copy_(flipped.restore(gated[0] if z is not None else out))
    return forward_outputs(y, states, reverse_from, average_directions,
                           save_states)


def scan_backward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                  reverse_from, states, grad_y):
    flipped, arguments = _forward_arguments(u, delta, A, B, C, D, z,
                                            delta_bias, reverse_from)
    kernels = _kernels()
    ungated = None
    if z is not None:
        ungated = kernels.fwd(*arguments[:6], None, arguments[7],
                              delta_softplus)[0]
    grad_y = flipped.restore(grad_y.to(u.dtype)).contiguous()
    (grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_bias,
     *rest) = kernels.bwd(*arguments, grad_y, states, ungated, None,
                          delta_softplus, False)
    grad_z = rest[0] if z is not None else None
    return flipped.gradients(
        (grad_u, grad_delta, grad_A, grad_B, grad_C,
         grad_D if D is not None else None, grad_z,
         grad_bias if delta_bias is not None else None), u, delta, A, B, C, D,
        z, delta_bias)


define_scan_operators('cuda', scan_forward, scan_backward, SAVED)
selective_scan = scan_operator('cuda')
causal_conv1d_silu = conv_operator('torch')
