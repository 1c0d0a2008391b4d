"""Every backend's ops as torch.library operators: one schema, and
``torch.library.opcheck`` (schema, fake implementation against the real
kernel, autograd registration, AOT dispatch with static and dynamic shapes)
on each backend that runs here, fp32 and bf16, odd shapes."""
import sys
import types

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmvim import ops
from mmvim.ops import library, registry

CI_BACKENDS = ('cpu', 'torch', 'sequential', 'triton')
# (batch, channels, length, d_state, groups, bidirectional): one token, one
# state, 17 states, one group, two groups (both directions, shared gate), an
# odd channel count per group.
SHAPES = [(1, 4, 1, 1, 1, False), (2, 6, 5, 17, 2, True),
          (1, 10, 9, 16, 2, True), (2, 3, 4, 2, 1, False)]
# opcheck traces each call several times (a second or two each): the
# quick suite checks one shape per backend in fp32 (the smallest for the
# slow Triton interpreter) and the cpu backend in bf16; the rest runs with
# the end-to-end tests (`-m slow`).
QUICK_SCANS = {('cpu', SHAPES[1], torch.float32),
               ('cpu', SHAPES[1], torch.bfloat16),
               ('torch', SHAPES[1], torch.float32),
               ('sequential', SHAPES[1], torch.float32),
               ('triton', SHAPES[0], torch.float32)}
SCAN_CASES = [
    pytest.param(backend, shape, dtype,
                 marks=[] if (backend, shape, dtype) in QUICK_SCANS else
                 [pytest.mark.slow],
                 id=f'{backend}-{shape}-{str(dtype)[6:]}')
    for backend in CI_BACKENDS
    for shape in (SHAPES[:2] if backend == 'triton' else SHAPES)
    for dtype in (torch.float32, torch.bfloat16)
]
CONV_CASES = [
    pytest.param(backend, dtype, channel_last, directions,
                 marks=[] if (dtype, channel_last, directions) == (
                     torch.float32, True, 2) else [pytest.mark.slow])
    for backend in ('cpu', 'torch')
    for dtype in (torch.float32, torch.bfloat16)
    for channel_last in (False, True)
    for directions in (1, 2)
]


def available(backend):
    reason = registry.load_backend(backend)[1]
    if reason is not None:
        pytest.skip(f'{backend} unavailable here: {reason}')
    return registry.load_backend(backend)[0]


def scan_arguments(batch, channels, length, d_state, groups, bidirectional,
                   dtype, requires_grad=True, seed=0, save_states=True,
                   delta_rank=None):
    """The forward operator's arguments; both directions averaged when
    ``bidirectional``; delta low-rank (its factor and weight) when
    ``delta_rank`` is given."""
    gen = torch.Generator().manual_seed(seed)

    def tensor(*shape, scale=1.):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype)

    u = tensor(batch, channels, length)
    # The mixer's layout: delta a channel-last view.
    delta = tensor(batch, length, channels, scale=0.5).transpose(1, 2)
    A = -torch.rand(channels, d_state, generator=gen) * 2
    B = tensor(batch, groups, d_state, length)
    C = tensor(batch, groups, length, d_state).transpose(2, 3)
    D, delta_bias = torch.randn(channels, generator=gen), torch.randn(
        channels, generator=gen) * 0.3
    z = tensor(batch, channels // 2 if bidirectional else channels, length)
    delta_weight = None
    if delta_rank is not None:
        # The mixer's layout: the factor a view of a token-major stack.
        delta = tensor(batch, groups, length, delta_rank).transpose(2, 3)
        delta_weight = torch.randn(channels, delta_rank, generator=gen) * 0.3
    tensors = [u, delta, A, B, C, D, z, delta_bias, delta_weight]
    if requires_grad:
        tensors = [None if t is None else t.detach().requires_grad_()
                   for t in tensors]
    reverse_from = channels // 2 if bidirectional else channels
    return (*tensors[:8], True, reverse_from, tensors[8], bidirectional,
            save_states)


def conv_arguments(batch, channels, length, dtype, channel_last, directions):
    """x, weight, bias, reverse_from: one direction looking back (weight
    (d, 4)) or both (weight (2d, 4), the second half looking ahead)."""
    x = torch.randn(batch, length, channels).to(dtype).transpose(1, 2)
    if not channel_last:
        x = x.contiguous()
    out_channels = directions * channels
    return (x.requires_grad_(), torch.randn(out_channels, 4).requires_grad_(),
            torch.randn(out_channels).requires_grad_(), channels)


def operator(op, backend, backward=False):
    return getattr(torch.ops.mmvim,
                   library.operator_name(op, backend, backward)).default


def test_every_operator_has_the_one_schema():
    for backend in ('cpu', 'torch', 'sequential', 'triton', 'cuda'):
        if registry.load_backend(backend)[0] is None:
            continue  # not importable here (cpu not built, no triton)
        conv_backend = backend if backend == 'cpu' else 'torch'
        for op, name in (('selective_scan', backend),
                         ('causal_conv1d_silu', conv_backend)):
            for backward in (False, True):
                schema = operator(op, name, backward)._schema
                expected = library.SCHEMAS[op + ('_backward' if backward
                                                 else '')]
                written = str(schema)
                assert written[written.index('('):] == expected, written
                assert not schema.is_mutable


@pytest.mark.parametrize('backend,shape,dtype', SCAN_CASES)
def test_opcheck_scan(backend, shape, dtype):
    available(backend)
    arguments = scan_arguments(*shape, dtype)
    torch.library.opcheck(operator('selective_scan', backend), arguments)
    y, states = operator('selective_scan', backend)(*arguments)
    # The backward takes the full-width gradient, averaged output or not.
    torch.library.opcheck(
        operator('selective_scan', backend, backward=True),
        (*[None if t is None else t.detach() for t in arguments[:8]],
         *arguments[8:10], states,
         torch.randn(arguments[0].shape, dtype=y.dtype)))


@pytest.mark.parametrize('backend,dtype,channel_last,directions',
                         CONV_CASES)
def test_opcheck_conv(backend, dtype, channel_last, directions):
    available(backend)
    for length in (1, 7):
        arguments = conv_arguments(2, 5, length, dtype, channel_last,
                                   directions)
        torch.library.opcheck(operator('causal_conv1d_silu', backend),
                              arguments)
        out = operator('causal_conv1d_silu', backend)(*arguments)
        torch.library.opcheck(
            operator('causal_conv1d_silu', backend, backward=True),
            (*[t.detach() for t in arguments[:3]], arguments[3],
             torch.randn_like(out)))


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('backend', [
    b for b in ('triton', 'cuda', 'torch') if torch.cuda.is_available()])
def test_opcheck_on_a_gpu(backend, dtype):
    # Runs where CUDA is (tools/analysis_tools/gpu_check.sh).
    available(backend)
    arguments = [
        t.detach().cuda().requires_grad_() if isinstance(t, torch.Tensor)
        else t for t in scan_arguments(*SHAPES[2], dtype)]
    torch.library.opcheck(operator('selective_scan', backend), arguments)
    conv_backend = 'torch'
    conv = [t.detach().cuda().requires_grad_() if isinstance(
        t, torch.Tensor) else t for t in conv_arguments(2, 6, 9, dtype, True,
                                                        2)]
    torch.library.opcheck(operator('causal_conv1d_silu', conv_backend), conv)


@pytest.mark.parametrize('backend', ['cpu', 'torch', 'sequential'])
def test_no_output_aliases_an_input(backend):
    available(backend)
    arguments = scan_arguments(1, 4, 3, 2, 1, False, torch.float32,
                               requires_grad=False)
    inputs = {t.untyped_storage().data_ptr() for t in arguments[:8]}
    for output in operator('selective_scan', backend)(*arguments):
        assert output.untyped_storage().data_ptr() not in inputs


def _mamba_stand_in():
    """A stand-in for mamba-ssm's compiled ``selective_scan_cuda`` with its
    calling convention (one direction, z as wide as u, the ungated output
    handed back to the backward), computing with mmvim's token loop: it tests
    the ``cuda`` backend's glue (flipping, argument order, gradients), not
    mamba-ssm's kernel."""
    from mmvim.ops.portable_scan import _sequential, sequential_backward

    def fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        assert B.stride(-1) == 1 and u.stride(-1) == 1  # what the kernel needs
        out = _sequential(u, delta, A, B, C, D, None, delta_bias,
                          delta_softplus)
        chunks = -(-u.shape[-1] // 2048)
        x = torch.zeros(u.shape[0], u.shape[1], chunks, 2 * A.shape[1])
        if z is None:
            return out, x
        return out, x, out * torch.nn.functional.silu(z)

    def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz,
            delta_softplus, recompute_out_z):
        assert z is None or out is not None  # mamba-ssm needs the ungated y
        (grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_z,
         grad_bias) = sequential_backward(
             u, delta, A, B, C, D, z, delta_bias, delta_softplus, u.shape[1],
             None, dout)
        result = (grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D,
                  grad_bias)
        return result if z is None else (*result, grad_z)

    module = types.ModuleType('selective_scan_cuda')
    module.fwd, module.bwd = fwd, bwd
    return module


@pytest.mark.parametrize('shape', SHAPES[1:3], ids=str)
def test_the_cuda_backend_calls_mamba_ssm_inside_its_own_operator(
        monkeypatch, shape):
    monkeypatch.setitem(sys.modules, 'selective_scan_cuda', _mamba_stand_in())
    cuda = registry.load_backend('cuda')[0]
    if cuda is None:
        pytest.skip('the cuda backend module does not import here')
    arguments = scan_arguments(*shape, torch.float64)
    with ops.use_backend('sequential'):
        expected = ops.bidirectional_selective_scan(
            *arguments[:8], delta_softplus=True, average_directions=True)
    y = cuda.selective_scan(*arguments)[0]
    torch.testing.assert_close(y, expected)
    grads = torch.autograd.grad(y, arguments[:8], y.detach())
    want = torch.autograd.grad(expected, arguments[:8], y.detach())
    for got, reference in zip(grads, want):
        torch.testing.assert_close(got, reference)
    torch.library.opcheck(operator('selective_scan', 'cuda'),
                          scan_arguments(*shape, torch.float32))


def test_a_mamba_ssm_without_its_compiled_scan_is_unavailable(monkeypatch):
    # mamba-ssm's main branch no longer builds the kernel by default:
    # `import mamba_ssm` works, the scan would fail at its first call.
    monkeypatch.setitem(sys.modules, 'mamba_ssm', types.ModuleType(
        'mamba_ssm'))
    monkeypatch.setitem(sys.modules, 'selective_scan_cuda', None)
    from mmvim.ops.backends import cuda
    with pytest.raises(ImportError, match='selective_scan_cuda'):
        cuda.check()


@pytest.mark.parametrize('backend', ['cpu', 'torch', 'sequential'])
@pytest.mark.parametrize('dtype,channels', [
    (torch.float32, 32), (torch.bfloat16, 32), (torch.float64, 20)])
def test_averaged_directions_are_the_halves_mean(backend, dtype, channels):
    # The same bits as averaging the full output. 32 channels: each half
    # whole lane tiles on the cpu backend (AVX-512's 16 or AVX2's 8), tiled
    # alike both ways; float64 takes the row path, here with halves of 10
    # rows (a tile and a rest).
    available(backend)
    shape = (2, channels, 9, 16, 2, True)
    full = list(scan_arguments(*shape, dtype, requires_grad=False))
    full[11] = False
    averaged = scan_arguments(*shape, dtype, requires_grad=False)
    y_full, _ = operator('selective_scan', backend)(*full)
    y, _ = operator('selective_scan', backend)(*averaged)
    half = channels // 2
    assert y.shape == (2, half, 9) and y.stride() == \
        library.empty_in_layout_of(averaged[0], channels=half).stride()
    torch.testing.assert_close(
        y, torch.add(y_full[:, :half], y_full[:, half:]).div_(2),
        rtol=0, atol=0)


@pytest.mark.parametrize('backend', ['cpu', 'torch', 'sequential'])
def test_averaged_directions_pass_half_the_gradient_to_each(backend):
    available(backend)
    shape = (2, 20, 9, 16, 2, True)
    full = list(scan_arguments(*shape, torch.float64))
    full[11] = False
    averaged = scan_arguments(*shape, torch.float64)
    half = shape[1] // 2
    y_full = operator('selective_scan', backend)(*full)[0]
    y = operator('selective_scan', backend)(*averaged)[0]
    grad = torch.randn_like(y)
    expected = torch.autograd.grad((y_full[:, :half] + y_full[:, half:]) / 2,
                                   full[:8], grad)
    got = torch.autograd.grad(y, averaged[:8], grad)
    for want, have in zip(expected, got):
        torch.testing.assert_close(have, want)


class SaveStatesFlags(TorchDispatchMode):
    """Records the save_states argument of every forward scan call."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name()
        if name.startswith('mmvim::selective_scan') and \
                not name.endswith('_backward'):
            self.seen.append(args[12])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('backend', ['cpu', 'torch', 'sequential'])
def test_inference_keeps_no_states(backend):
    available(backend)
    arguments = scan_arguments(1, 16, 130, 16, 2, True, torch.float32,
                               requires_grad=False, save_states=False)
    y, states = operator('selective_scan', backend)(*arguments)
    assert states.shape[2] == 0
    torch.library.opcheck(operator('selective_scan', backend), arguments)
    # The public op saves states exactly when a gradient may be taken.
    seen = []
    with ops.use_backend(backend), SaveStatesFlags(seen):
        ops.bidirectional_selective_scan(*arguments[:8], delta_softplus=True)
        inputs = [t if t is None else t.requires_grad_() for t in
                  arguments[:8]]
        ops.bidirectional_selective_scan(*inputs, delta_softplus=True)
        with torch.no_grad():
            ops.bidirectional_selective_scan(*inputs, delta_softplus=True)
    assert seen == [False, True, False]


def test_a_backward_without_saved_states_is_refused():
    available('torch')
    arguments = scan_arguments(1, 4, 3, 2, 2, True, torch.float32,
                               save_states=False)
    y, _ = operator('selective_scan', 'torch')(*arguments)
    with pytest.raises(RuntimeError, match='save_states=False'):
        y.sum().backward()


LOW_RANK_CASES = [
    pytest.param(backend, dtype,
                 marks=[] if (backend, dtype) in {
                     ('cpu', torch.float32), ('cpu', torch.bfloat16),
                     ('torch', torch.float32)} else [pytest.mark.slow])
    for backend in ('cpu', 'torch', 'sequential')
    for dtype in (torch.float32, torch.bfloat16)]


@pytest.mark.parametrize('backend,dtype', LOW_RANK_CASES)
def test_opcheck_scan_with_a_low_rank_delta(backend, dtype):
    available(backend)
    arguments = scan_arguments(2, 20, 9, 16, 2, True, dtype, delta_rank=3)
    torch.library.opcheck(operator('selective_scan', backend), arguments)


@pytest.mark.parametrize('backend', ['cpu', 'torch', 'sequential'])
@pytest.mark.parametrize('bidirectional', [False, True])
def test_a_low_rank_delta_is_its_product(backend, bidirectional):
    # The scan's own dt_proj against the product made beforehand, forward
    # and backward (float64: the gradients of the factor and the weight
    # against autograd through the product).
    available(backend)
    shape = (2, 20, 70, 16, 2, bidirectional)
    low_rank = scan_arguments(*shape, torch.float64, delta_rank=3)
    factor, weight = low_rank[1], low_rank[10]
    product = library.full_delta(factor, weight, shape[1])
    full = (low_rank[0], product, *low_rank[2:10], None, *low_rank[11:])
    y = operator('selective_scan', backend)(*low_rank)[0]
    expected = operator('selective_scan', backend)(*full)[0]
    torch.testing.assert_close(y, expected)
    grad = torch.randn_like(y)
    inputs = [t for t in low_rank[:8] if t is not None] + [weight]
    for got, want in zip(torch.autograd.grad(y, inputs, grad),
                         torch.autograd.grad(expected, inputs, grad)):
        torch.testing.assert_close(got, want)


def test_the_cpu_lanes_make_a_low_rank_delta_as_torch_does():
    available('cpu')
    low_rank = scan_arguments(1, 32, 130, 16, 2, True, torch.float32,
                              requires_grad=False, delta_rank=12)
    product = library.full_delta(low_rank[1], low_rank[10], 32)
    full = (low_rank[0], product, *low_rank[2:10], None, *low_rank[11:])
    torch.testing.assert_close(
        operator('selective_scan', 'cpu')(*low_rank)[0],
        operator('selective_scan', 'cpu')(*full)[0], rtol=1e-5, atol=1e-6)


def test_a_low_rank_delta_of_the_wrong_shape_is_named():
    arguments = list(scan_arguments(1, 8, 5, 4, 2, True, torch.float32,
                                    requires_grad=False, delta_rank=3))
    with pytest.raises(ValueError, match='delta has shape .* low-rank'):
        ops.bidirectional_selective_scan(
            arguments[0], arguments[1][:, :1], *arguments[2:8],
            delta_softplus=True, delta_weight=arguments[10])
    with pytest.raises(ValueError, match='delta_weight has shape'):
        ops.bidirectional_selective_scan(
            *arguments[:8], delta_softplus=True,
            delta_weight=arguments[10][:4])
