"""The Mamba ops as ``torch.library`` operators in the ``mmvim`` namespace.

Every backend implements the same two ops, each with the same schema, as
operators of its own (``mmvim::selective_scan_<backend>``,
``mmvim::causal_conv1d_silu_<backend>``) with their backward operators; the
registry picks the backend while Python runs, so ``torch.compile``,
``torch.export`` and ``FakeTensorMode`` see one call of one operator per op.

- ``selective_scan_<b>(u, delta, A, B, C, D?, z?, delta_bias?, delta_softplus,
  reverse_from, delta_weight?, average_directions, save_states) -> (y,
  states)``: B and C grouped ``(b, g, n, l)``; delta ``(b, d, l)``, or with
  ``delta_weight`` ``(d, r)`` its low-rank factor ``(b, g, r, l)`` grouped as
  B and C, delta = delta_weight @ (its group's rows) (:func:`full_delta`: a
  Mamba layer's dt_proj inside the scan, which then never stores a
  ``(b, d, l)`` delta, nor does the forward save one for the backward); the
  channels from ``reverse_from`` on (a group boundary, or d) scan from the
  last token to the first; z is ``(b, d, l)`` or
  ``(b, d/2, l)``, then shared by channel c and c + d/2. y is in u's dtype and
  layout (:func:`empty_in_layout_of`), ``(b, d, l)``, or with
  ``average_directions`` (``reverse_from`` = d/2) ``(b, d/2, l)``: channel c
  holds (y_c + y_{c + d/2}) / 2, each half rounded to u's dtype first, as the
  Vim mixer averages its directions (half the output's memory, no separate
  pass). ``states`` is what the backward needs besides the inputs:
  ``(b, d, chunks, width)`` in the compute dtype, where each backend says how
  many chunks and how wide (:class:`SavedStates`); without ``save_states``
  (nothing will need a gradient) it has no chunks and the forward keeps none.
- ``selective_scan_<b>_backward(<the forward's arguments up to reverse_from>,
  states, grad_y)``: the gradients of u, delta, A, B, C, D, z, delta_bias, each
  a new contiguous tensor in its input's shape and dtype (empty where the
  optional input is absent). It takes the full delta and grad_y ``(b, d, l)``
  whatever the forward was given and wrote: the autograd formula expands a
  low-rank delta for it and projects delta's gradient back onto the factor
  and the weight, and gives each direction half an average's gradient.
- ``causal_conv1d_silu_<b>(x, weight, bias?, reverse_from) -> out``: x
  ``(b, d_in, l)``, weight ``(d_out, k)`` with d_out a multiple of d_in; output
  channel c reads input channel ``c % d_in`` (a Vim layer's two directions are
  one call into one tensor), and the channels from ``reverse_from`` on look
  ahead instead of back; out ``(b, d_out, l)`` in x's dtype and layout. Its
  backward returns ``(grad_x in x's layout, grad_weight, grad_bias)``.

- ``rms_norm_<b>(x, weight, eps) -> out``: ``x * rsqrt(mean(x^2) + eps) *
  weight`` over x's last dimension, float32, contiguous, with its backward
  ``(x, weight, eps, grad_out) -> (grad_x, grad_weight)``; only the ``cpu``
  backend defines them, and :func:`mmvim.ops.rms_norm` computes torch's
  formula elsewhere.

The forward operators carry their autograd formula (their backward
operator). A backend written in Python defines its operators with
:func:`define_scan_operators` / :func:`define_conv_operators`; a compiled one
declares the same schemas and registers its fake implementations and autograd
with :func:`register_scan_python_parts` / :func:`register_conv_python_parts`.
"""
from typing import Callable, NamedTuple, Optional

import torch

NAMESPACE = 'mmvim'
SCAN_ARGUMENTS = ('Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, '
                  'Tensor? D, Tensor? z, Tensor? delta_bias, '
                  'bool delta_softplus, SymInt reverse_from')
# The forward's own arguments, after SCAN_ARGUMENTS (the backward takes none).
SCAN_FORWARD_OPTIONS = ('Tensor? delta_weight, bool average_directions, '
                        'bool save_states')
CONV_ARGUMENTS = 'Tensor x, Tensor weight, Tensor? bias, SymInt reverse_from'
NORM_ARGUMENTS = 'Tensor x, Tensor weight, float eps'
SCHEMAS = {
    'selective_scan':
    f'({SCAN_ARGUMENTS}, {SCAN_FORWARD_OPTIONS}) -> (Tensor, Tensor)',
    'selective_scan_backward':
    f'({SCAN_ARGUMENTS}, Tensor states, Tensor grad_y) -> (Tensor, Tensor, '
    'Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)',
    'causal_conv1d_silu': f'({CONV_ARGUMENTS}) -> Tensor',
    'causal_conv1d_silu_backward':
    f'({CONV_ARGUMENTS}, Tensor grad_out) -> (Tensor, Tensor, Tensor)',
    'rms_norm': f'({NORM_ARGUMENTS}) -> Tensor',
    'rms_norm_backward':
    f'({NORM_ARGUMENTS}, Tensor grad_out) -> (Tensor, Tensor)',
}


def operator_name(op: str, backend: str, backward: bool = False) -> str:
    """``selective_scan``, ``cpu`` -> ``selective_scan_cpu`` (the name in the
    ``mmvim`` namespace)."""
    return f'{op}_{backend}' + ('_backward' if backward else '')


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The state's dtype: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def is_channel_last(tensor: torch.Tensor) -> bool:
    return tensor.stride(1) == 1 and tensor.shape[1] > 1


def empty_in_layout_of(tensor: torch.Tensor,
                       dtype: Optional[torch.dtype] = None,
                       channels: Optional[int] = None) -> torch.Tensor:
    """A new (b, d, l) tensor laid out like ``tensor`` (d: its channels, or
    ``channels``): channel-last when it is (the mixer's views), so the next op
    reads it without a transpose; else contiguous. The compiled kernels follow
    the same rule (csrc/stable_tensor.h)."""
    batch, own_channels, length = tensor.shape
    channels = own_channels if channels is None else channels
    dtype = dtype or tensor.dtype
    if not is_channel_last(tensor):
        return tensor.new_empty((batch, channels, length), dtype=dtype)
    return tensor.new_empty((batch, length, channels),
                            dtype=dtype).transpose(1, 2)


def no_gradient(like: torch.Tensor) -> torch.Tensor:
    """The gradient of an absent optional input (outputs cannot be None)."""
    return like.new_empty(0)


class SavedStates(NamedTuple):
    """What a backend's forward saves: the state at the start of each chunk
    of ``chunk_length(l)`` tokens, ``width(n)`` values wide."""
    chunk_length: Callable[[int], int]
    width: Callable[[int], int] = lambda d_state: d_state

    def shape(self, u: torch.Tensor, A: torch.Tensor, save: bool = True):
        """The states' shape; no chunks where ``save`` is False."""
        batch, channels, length = u.shape
        chunk = self.chunk_length(length) if save else 0
        chunks = 0 if chunk == 0 else (length + chunk - 1) // chunk
        return (batch, channels, chunks, self.width(A.shape[1]))


def full_delta(delta: torch.Tensor, delta_weight: Optional[torch.Tensor],
               channels: int) -> torch.Tensor:
    """delta (b, d, l) from the operator's argument: itself, or from its
    low-rank factor (b, g, r, l) and ``delta_weight`` (d, r), channel c of
    group k the product of its weight row and group k's factor."""
    if delta_weight is None:
        return delta
    batch, groups, rank, length = delta.shape
    compute = _product_dtype(delta)
    weight = delta_weight.to(compute).view(groups, channels // groups, rank)
    return torch.matmul(weight, delta.to(compute)).view(
        batch, channels, length).to(delta.dtype)


def low_rank_delta_gradients(grad_delta: torch.Tensor, delta: torch.Tensor,
                             delta_weight: torch.Tensor):
    """The gradients of :func:`full_delta`'s factor and weight from the
    full delta's (b, d, l)."""
    batch, groups, rank, length = delta.shape
    compute = _product_dtype(grad_delta)
    grad = grad_delta.to(compute).view(batch, groups, -1, length)
    weight = delta_weight.to(compute).view(groups, -1, rank)
    grad_factor = torch.matmul(weight.transpose(-1, -2), grad)
    grad_weight = torch.matmul(grad, delta.to(compute).transpose(
        -1, -2)).sum(0).view(delta_weight.shape)
    return grad_factor.to(delta.dtype), grad_weight.to(delta_weight.dtype)


def _product_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The low-rank delta's products run in float32 for half-precision
    factors, as the scan kernels accumulate them: a CPU without bf16
    arithmetic ran them in bf16 several times slower (a Vim-Ti scan's
    backward 2x slower with bf16 inputs than with fp32 ones)."""
    return torch.promote_types(tensor.dtype, torch.float32)


def empty_output(u: torch.Tensor, reverse_from, average_directions: bool):
    """The forward's y, uninitialised: u's layout, d or (averaged) d/2
    channels."""
    return empty_in_layout_of(
        u, channels=reverse_from if average_directions else None)


def average_directions_of(y: torch.Tensor, reverse_from) -> torch.Tensor:
    """(y[:, :r] + y[:, r:]) / 2 of a full-width y (r = reverse_from =
    d/2), in y's layout and dtype: what a backend that writes both
    directions returns for ``average_directions``."""
    averaged = empty_in_layout_of(y, channels=reverse_from)
    torch.add(y[:, :reverse_from], y[:, reverse_from:], out=averaged)
    return averaged.div_(2)


def forward_outputs(y: torch.Tensor, states: torch.Tensor, reverse_from,
                    average_directions: bool, save_states: bool):
    """A Python backend's (y, states) from its full-width y and the states
    it saved, as the options ask."""
    if average_directions:
        y = average_directions_of(y, reverse_from)
    if not save_states:
        states = states.new_empty((*states.shape[:2], 0, states.shape[3]))
    return y, states


def _scan_fake(saved: SavedStates):

    def fake(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
             reverse_from, delta_weight, average_directions, save_states):
        return (empty_output(u, reverse_from, average_directions),
                u.new_empty(saved.shape(u, A, save_states),
                            dtype=compute_dtype(u.dtype)))

    return fake


def _scan_backward_fake(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                        reverse_from, states, grad_y):
    return tuple(
        no_gradient(u) if t is None else torch.empty_like(
            t, memory_format=torch.contiguous_format)
        for t in (u, delta, A, B, C, D, z, delta_bias))


def _conv_fake(x, weight, bias, reverse_from):
    return empty_in_layout_of(x, channels=weight.shape[0])


def _conv_backward_fake(x, weight, bias, reverse_from, grad_out):
    return (empty_in_layout_of(x),
            torch.empty_like(weight, memory_format=torch.contiguous_format),
            no_gradient(x) if bias is None else torch.empty_like(
                bias, memory_format=torch.contiguous_format))


def _operator(name: str):
    return getattr(getattr(torch.ops, NAMESPACE), name).default


def _qualified(name: str) -> str:
    return f'{NAMESPACE}::{name}'


def _gradients_of_given(grads, needs_input_grad, inputs):
    """The backward operator's gradients, None for inputs that are absent or
    need none."""
    return tuple(grad if needed and given is not None else None
                 for grad, needed, given in zip(grads, needs_input_grad,
                                                inputs))


def _register_scan_autograd(backend: str) -> None:
    backward = _operator(operator_name('selective_scan', backend, True))

    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(*inputs[:8], inputs[10], output[1])
        ctx.options = inputs[8:10]
        ctx.average_directions, ctx.saved_states = inputs[11:]

    def gradients(ctx, grad_y, _grad_states):
        *inputs, delta_weight, states = ctx.saved_tensors
        if not ctx.saved_states:
            raise RuntimeError(
                'selective_scan: the forward ran with save_states=False, '
                'so it kept nothing for a backward; call it with '
                'save_states=True where a gradient is needed')
        if ctx.average_directions:
            # Each direction contributed half of every averaged value. Both
            # copies go into a tensor of grad_y's layout: torch.cat of the
            # channel-last gradient out_proj returns took 8x as long (1.5
            # ms of a Vim-Ti layer's 25 ms backward at 1025 tokens).
            half = grad_y * 0.5
            grad_y = empty_in_layout_of(half, channels=2 * half.shape[1])
            grad_y[:, :half.shape[1]].copy_(half)
            grad_y[:, half.shape[1]:].copy_(half)
        delta = inputs[1]
        grads = list(backward(inputs[0],
                              full_delta(delta, delta_weight,
                                         inputs[0].shape[1]),
                              *inputs[2:], *ctx.options, states, grad_y))
        grad_weight = None
        if delta_weight is not None:
            grads[1], grad_weight = low_rank_delta_gradients(
                grads[1], delta, delta_weight)
        inputs.append(delta_weight)
        grads = _gradients_of_given(
            (*grads, grad_weight),
            (*ctx.needs_input_grad[:8], ctx.needs_input_grad[10]), inputs)
        return (*grads[:8], None, None, grads[8], None, None)

    torch.library.register_autograd(
        _qualified(operator_name('selective_scan', backend)), gradients,
        setup_context=setup_context)


def _register_operator_autograd(op: str, backend: str, tensors: int) -> None:
    """Autograd of ``<op>_<backend>`` whose first ``tensors`` arguments are
    its differentiable tensors and the rest options: the backward operator
    takes them all and grad_out, and returns one gradient per tensor."""
    backward = _operator(operator_name(op, backend, True))

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:tensors])
        ctx.options = inputs[tensors:]

    def gradients(ctx, grad_out):
        inputs = ctx.saved_tensors
        grads = backward(*inputs, *ctx.options, grad_out)
        return (*_gradients_of_given(grads, ctx.needs_input_grad, inputs),
                *(None, ) * len(ctx.options))

    torch.library.register_autograd(_qualified(operator_name(op, backend)),
                                    gradients,
                                    setup_context=setup_context)


def register_scan_python_parts(backend: str, saved: SavedStates) -> None:
    """Fake implementations and autograd of a scan operator pair whose
    schemas and kernels were registered elsewhere (the compiled library)."""
    torch.library.register_fake(
        _qualified(operator_name('selective_scan', backend)),
        _scan_fake(saved))
    torch.library.register_fake(
        _qualified(operator_name('selective_scan', backend, True)),
        _scan_backward_fake)
    _register_scan_autograd(backend)


def register_conv_python_parts(backend: str) -> None:
    """As :func:`register_scan_python_parts`, for a conv operator pair."""
    torch.library.register_fake(
        _qualified(operator_name('causal_conv1d_silu', backend)), _conv_fake)
    torch.library.register_fake(
        _qualified(operator_name('causal_conv1d_silu', backend, True)),
        _conv_backward_fake)
    _register_operator_autograd('causal_conv1d_silu', backend, tensors=3)


def register_norm_python_parts(backend: str) -> None:
    """Fake implementations and autograd of a compiled ``rms_norm_<backend>``
    and its backward."""
    torch.library.register_fake(
        _qualified(operator_name('rms_norm', backend)),
        lambda x, weight, eps: torch.empty_like(
            x, memory_format=torch.contiguous_format))
    torch.library.register_fake(
        _qualified(operator_name('rms_norm', backend, True)),
        lambda x, weight, eps, grad_out: (
            torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(weight, memory_format=torch.contiguous_format)))
    _register_operator_autograd('rms_norm', backend, tensors=2)


def define_scan_operators(backend: str,
                          forward: Callable,
                          backward: Callable,
                          saved: SavedStates,
                          triton: bool = False) -> None:
    """Define ``mmvim::selective_scan_<backend>`` and its backward from Python
    implementations, with fake implementations and autograd. ``triton``: as
    ``torch.library.triton_op``, whose implementation (Triton launches through
    ``wrap_triton``) Inductor sees and which is its own fake."""
    define = torch.library.triton_op if triton else torch.library.custom_op
    for kernel, is_backward in ((forward, False), (backward, True)):
        define(_qualified(operator_name('selective_scan', backend,
                                        is_backward)),
               kernel, mutates_args=(),
               schema=SCHEMAS['selective_scan' +
                              ('_backward' if is_backward else '')])
    if triton:
        _register_scan_autograd(backend)
    else:
        register_scan_python_parts(backend, saved)


def define_conv_operators(backend: str, forward: Callable,
                          backward: Callable) -> None:
    """Define ``mmvim::causal_conv1d_silu_<backend>`` and its backward from
    Python implementations, with fake implementations and autograd."""
    for kernel, is_backward in ((forward, False), (backward, True)):
        torch.library.custom_op(
            _qualified(operator_name('causal_conv1d_silu', backend,
                                     is_backward)),
            kernel, mutates_args=(),
            schema=SCHEMAS['causal_conv1d_silu' +
                           ('_backward' if is_backward else '')])
    register_conv_python_parts(backend)


def scan_operator(backend: str) -> Callable:
    """The forward scan operator of ``backend``."""
    return _operator(operator_name('selective_scan', backend))


def conv_operator(backend: str) -> Callable:
    """The forward conv operator of ``backend``."""
    return _operator(operator_name('causal_conv1d_silu', backend))


def norm_operator(backend: str) -> Callable:
    """The forward RMSNorm operator of ``backend``."""
    return _operator(operator_name('rms_norm', backend))
