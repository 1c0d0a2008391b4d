"""The ops the Vim mixer calls: argument checks, then the chosen backend's
operator.

Every call checks its arguments the same way whatever runs it (a kernel would
otherwise read out of bounds or silently ignore extra entries), asks
:func:`mmvim.ops.registry.resolve` which backend runs for its tensors, and
calls that backend's operator (:mod:`mmvim.ops.library`), below the Autograd
key where no gradient is taken: under ``torch.compile`` or ``torch.export``
this function is traced away and one operator call remains.
"""
import contextlib
from typing import Optional

import torch

from .registry import resolve


def _shape_error(name: str, tensor: torch.Tensor, expected: str):
    return ValueError(f'selective_scan: {name} has shape '
                      f'{tuple(tensor.shape)}, expected {expected}.')


def check_scan_arguments(u, delta, A, B, C, D, z, delta_bias,
                         bidirectional: bool = False,
                         delta_weight=None) -> None:
    """Raise a ValueError naming the argument whose shape does not fit."""
    if u.dim() != 3 or 0 in u.shape:
        raise _shape_error('u', u, '(batch, channels, length), none empty')
    batch, channels, length = u.shape
    if delta_weight is None and delta.shape != u.shape:
        raise _shape_error('delta', delta, f'u\'s {tuple(u.shape)}')
    if A.dim() != 2 or A.shape[0] != channels or A.shape[1] == 0:
        raise _shape_error('A', A, f'({channels}, d_state > 0)')
    state = A.shape[1]
    if B.dim() == 3:
        groups = 1
        expected = f'({batch}, {state}, {length}) or (batch, groups, ' \
                   f'{state}, {length})'
    elif B.dim() == 4:
        groups = B.shape[1]
        expected = f'({batch}, groups dividing {channels}, {state}, {length})'
    else:
        raise _shape_error('B', B, f'({batch}, [groups,] {state}, {length})')
    if (B.shape[0], *B.shape[-2:]) != (batch, state, length) or groups == 0 \
            or channels % groups:
        raise _shape_error('B', B, expected)
    if C.shape != B.shape:
        raise _shape_error('C', C, f'B\'s {tuple(B.shape)}')
    if delta_weight is not None:
        if delta_weight.dim() != 2 or delta_weight.shape[0] != channels or \
                delta_weight.shape[1] == 0:
            raise _shape_error('delta_weight', delta_weight,
                               f'({channels}, rank > 0)')
        rank = delta_weight.shape[1]
        if tuple(delta.shape) != (*B.shape[:-2], rank, length):
            raise _shape_error(
                'delta', delta, f'{(*B.shape[:-2], rank, length)}: the '
                'low-rank factor, grouped as B, of delta_weight\'s rank')
    for name, vector in (('D', D), ('delta_bias', delta_bias)):
        if vector is not None and tuple(vector.shape) != (channels, ):
            raise _shape_error(name, vector, f'({channels},)')
    if bidirectional:
        if groups % 2:
            raise _shape_error(
                'B', B, '(batch, groups, d_state, length) with an even '
                'number of groups: the first half scans forwards, the '
                'second half backwards')
        z_shape = (batch, channels // 2, length)
        if z is not None and tuple(z.shape) != z_shape:
            raise _shape_error('z', z, f'{z_shape}, one gate shared by '
                               'both directions')
    elif z is not None and z.shape != u.shape:
        raise _shape_error('z', z, f'u\'s {tuple(u.shape)}')


def _one_dtype(u, delta, z):
    """u, delta and z in one dtype (the operators take one), promoted."""
    dtype = u.dtype if z is None else torch.promote_types(u.dtype, z.dtype)
    dtype = torch.promote_types(dtype, delta.dtype)
    return [None if t is None else t.to(dtype) for t in (u, delta, z)]


def _needs_gradient(tensors) -> bool:
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in tensors)


def _below_autograd_unless(needs_gradient: bool):
    """Where no gradient is taken, the operator is called below the Autograd
    dispatch key: its autograd kernel (torch.library's, in Python) would only
    pass the call on, which took up to 25 us of a Vim-Ti scan call and 13-18
    us of a conv call at 1025 tokens (<= 0.8% and 3-5%; one thread, Xeon),
    ~0.5% of a 512 px forward. Not while torch.compile or torch.export
    traces the call: they record the operator itself."""
    if needs_gradient or torch.compiler.is_compiling():
        return contextlib.nullcontext()
    return torch._C._AutoDispatchBelowAutograd()


def _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
          reverse_from, delta_weight=None, average_directions=False):
    _, backend = resolve(u.device)
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
        if delta_weight is not None:
            delta = delta.unsqueeze(1)
    u_, delta_, z_ = _one_dtype(u, delta, z)
    # Inference keeps no chunk states (3 MiB a Vim-Ti layer at 1024 px).
    save_states = _needs_gradient(
        (u, delta, A, B, C, D, z, delta_bias, delta_weight))
    with _below_autograd_unless(save_states):
        y, _ = backend.selective_scan(u_, delta_, A, B, C, D, z_, delta_bias,
                                      bool(delta_softplus), reverse_from,
                                      delta_weight, average_directions,
                                      save_states)
    return y.to(u.dtype)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                   delta_softplus=False, delta_weight=None) -> torch.Tensor:
    """``y = scan(u) * silu(z)`` with mamba-ssm's ``selective_scan_fn``
    arguments (all tensors; D, z, delta_bias optional).

    u, delta, z: (b, d, l); A: (d, n); B, C: (b, n, l), or (b, g, n, l) with
    the d channels split into g groups that share B and C; D, delta_bias:
    (d,). ``delta_weight`` (d, r): delta is given as its low-rank factor,
    shaped as B with r rows (the input of a Mamba layer's dt_proj, whose
    weight this is), and the scan makes delta itself, never storing it. The
    state is float32 (float64 for float64 inputs) whatever the input dtype;
    returns (b, d, l) in u's dtype.
    """
    check_scan_arguments(u, delta, A, B, C, D, z, delta_bias,
                         delta_weight=delta_weight)
    return _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                 u.shape[1], delta_weight)


def bidirectional_selective_scan(u, delta, A, B, C, D=None, z=None,
                                 delta_bias=None,
                                 delta_softplus=False,
                                 average_directions=False,
                                 delta_weight=None) -> torch.Tensor:
    """Both directions of a Vim layer in one call, nothing flipped.

    As :func:`selective_scan` with B, C grouped (b, g, n, l), g even: the
    channels of the first g/2 groups scan from the first token to the last,
    those of the others from the last to the first, each output at its
    token's own position. z (b, d/2, l) gates both halves: the reference
    flips z with x, so in token order both directions see the same gate.
    Returns (b, d, l), or with ``average_directions`` the two directions'
    average (b, d/2, l), which the Vim mixer takes: written by the scan, it
    costs neither a (b, d, l) output nor a pass of its own.
    """
    check_scan_arguments(u, delta, A, B, C, D, z, delta_bias,
                         bidirectional=True, delta_weight=delta_weight)
    return _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                 u.shape[1] // 2, delta_weight, bool(average_directions))


def _check_conv_arguments(x, weight, bias, directions: int) -> None:
    name = 'causal_conv1d_silu' if directions == 1 else \
        'bidirectional_causal_conv1d_silu'
    if x.dim() != 3 or 0 in x.shape or weight.dim() != 2 or \
            weight.shape[0] != directions * x.shape[1] or weight.shape[1] == 0:
        raise ValueError(
            f'{name}: x {tuple(x.shape)} and weight {tuple(weight.shape)} '
            'must be (batch, channels, length) and '
            f'({"" if directions == 1 else "2 * "}channels, width), none '
            'empty.')
    if bias is not None and tuple(bias.shape) != (weight.shape[0], ):
        raise ValueError(f'{name}: bias has shape {tuple(bias.shape)}, '
                         f'expected ({weight.shape[0]},).')


def _conv(x, weight, bias, reverse_from):
    _, backend = resolve(x.device)
    with _below_autograd_unless(_needs_gradient((x, weight, bias))):
        return backend.causal_conv1d_silu(x, weight, bias, reverse_from)


def causal_conv1d_silu(x: torch.Tensor,
                       weight: torch.Tensor,
                       bias: Optional[torch.Tensor] = None,
                       reverse: bool = False) -> torch.Tensor:
    """Depthwise conv1d + SiLU over x (b, d, l) with weight (d, k).

    Causal: output t sees inputs t-k+1..t. ``reverse``: the conv of the
    flipped sequence, in token order (output t sees t..t+k-1), which is what
    the backward direction of a Vim layer computes.
    """
    _check_conv_arguments(x, weight, bias, directions=1)
    return _conv(x, weight, bias, 0 if reverse else x.shape[1])


def bidirectional_causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor,
                                     bias: Optional[torch.Tensor] = None
                                     ) -> torch.Tensor:
    """Both directions' convs of a Vim layer into one (b, 2d, l) tensor:
    weight (2d, k), its first d rows the causal conv of x (b, d, l), the
    others the look-ahead (``reverse``) conv of x, in token order. The same as
    concatenating two :func:`causal_conv1d_silu` calls, without the copy;
    the result is in x's layout."""
    _check_conv_arguments(x, weight, bias, directions=2)
    return _conv(x, weight, bias, x.shape[1])
