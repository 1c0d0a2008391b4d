"""The ``triton`` ops backend against the ``sequential`` ground truth.

Without a GPU the kernels run in Triton's CPU interpreter, which triton
picks when they are defined: TRITON_INTERPRET is set here, before anything
imports them (set it to 0 on a GPU machine to test the compiled kernels on
CUDA). Interpreted kernels are slow, so the shapes are tiny; the lengths
still cover one token, a partial chunk and many chunks.
"""
import os
import subprocess
import sys

os.environ.setdefault('TRITON_INTERPRET', '1')

import pytest  # noqa: E402
import torch  # noqa: E402

triton = pytest.importorskip(
    'triton', reason='triton is not installed: pip install -r '
    'requirements/triton.txt')
import triton.language as tl  # noqa: E402

from mmvim import ops  # noqa: E402
from mmvim.ops.triton import scan as triton_scan  # noqa: E402

INTERPRETED = os.environ['TRITON_INTERPRET'] == '1'
DEVICE = 'cpu' if INTERPRETED else 'cuda'
# Triton's interpreter runs the kernels orders of magnitude slower than a GPU
# (about 25 s for this file on the CPU): `make test` runs them, the quick
# `pytest -m "not slow"` does not.
pytestmark = pytest.mark.slow if INTERPRETED else []
if not INTERPRETED and not torch.cuda.is_available():
    pytest.skip('TRITON_INTERPRET is not 1 and there is no GPU',
                allow_module_level=True)


def make_inputs(batch=2, channels=4, length=23, state=3, groups=2,
                dtype=torch.float32, delta_scale=0.5, seed=0,
                bidirectional=False):
    """Scan arguments; B, C (b, n, l) when ``groups`` is None. d_state 3 is
    padded to 4 inside the kernels."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(DEVICE, dtype)

    bc_shape = (batch, state, length) if groups is None else (batch, groups,
                                                             state, length)
    z_channels = channels // 2 if bidirectional else channels
    return dict(
        u=randn(batch, channels, length),
        delta=randn(batch, channels, length) * delta_scale,
        A=-torch.rand(channels, state, generator=gen).to(DEVICE, dtype) * 3,
        B=randn(*bc_shape),
        C=randn(*bc_shape),
        D=randn(channels),
        z=randn(batch, z_channels, length),
        delta_bias=randn(channels) * 0.3)


def run(backend, inputs, delta_softplus, grad_out=None, bidirectional=False):
    """(output, {name: gradient}) of the scan on ``backend``."""
    tensors = {k: v.detach().clone().requires_grad_()
               for k, v in inputs.items() if v is not None}
    call = inputs.copy()
    call.update(tensors)
    op = ops.bidirectional_selective_scan if bidirectional else \
        ops.selective_scan
    with ops.use_backend(backend):
        out = op(**call, delta_softplus=delta_softplus)
    if grad_out is None:
        return out, None
    grads = torch.autograd.grad(out, list(tensors.values()), grad_out)
    return out, dict(zip(tensors, grads))


def assert_matches(inputs, delta_softplus=True, tolerance=1e-5,
                   bidirectional=False, reference='sequential'):
    """Output and every input's gradient equal the plain loop's (or those
    of the ``reference`` backend)."""
    expected, _ = run(reference, inputs, delta_softplus,
                      bidirectional=bidirectional)
    grad_out = torch.randn(expected.shape, generator=torch.Generator(
    ).manual_seed(1)).to(expected)
    _, expected_grads = run(reference, inputs, delta_softplus, grad_out,
                            bidirectional)
    out, grads = run('triton', inputs, delta_softplus, grad_out,
                     bidirectional)
    assert out.dtype == inputs['u'].dtype
    assert_close_to_scale(out, expected, tolerance, 'output')
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert grad.dtype == inputs[name].dtype, name
        assert_close_to_scale(grad, expected_grads[name], tolerance,
                              f'gradient of {name}')


def assert_close_to_scale(actual, expected, tolerance, what):
    """Equal within ``tolerance`` of the largest expected magnitude: a
    float32 scan rounds relative to the state, not to each entry."""
    scale = expected.abs().max().item() + 1e-6
    torch.testing.assert_close(actual / scale, expected / scale,
                               rtol=tolerance, atol=tolerance, msg=what)


@pytest.fixture(autouse=True)
def reset_forced_backend():
    yield
    ops.set_backend(None)


def test_forced_triton_backend_runs_on_this_device():
    with ops.use_backend('triton'):
        assert ops.get_backend(DEVICE) == 'triton'
    status = {s.name: s for s in ops.list_backends()}['triton']
    assert status.available, status.reason
    assert DEVICE in status.device_types


@pytest.mark.parametrize('groups', [None, 2])
@pytest.mark.parametrize('length', [1, 2, 3, 128, 300])
def test_matches_sequential_loop_with_every_option(length, groups):
    assert_matches(make_inputs(length=length, groups=groups))


@pytest.mark.parametrize('groups', [None, 2])
@pytest.mark.parametrize('length', [1, 3, 128])
def test_matches_sequential_loop_without_options(length, groups):
    inputs = make_inputs(length=length, groups=groups)
    # Without softplus the time steps are taken as given: positive ones.
    inputs.update(D=None, z=None, delta_bias=None,
                  delta=inputs['delta'].abs())
    assert_matches(inputs, delta_softplus=False)


@pytest.mark.parametrize('tiles', [(16, 8, 16), (4, 2, 8)])
@pytest.mark.parametrize('bidirectional', [False, True])
def test_several_channel_blocks_and_chunks(monkeypatch, tiles,
                                           bidirectional):
    # The GPU's tiles (the interpreter defaults to larger ones) and smaller
    # ones: 12 channels a group split into blocks with a partial last one,
    # 45 tokens into chunks with a partial last one.
    monkeypatch.setattr(triton_scan, 'TILES', triton_scan.Tiles(*tiles))
    inputs = make_inputs(batch=1, channels=24, length=45,
                         bidirectional=bidirectional)
    assert_matches(inputs, bidirectional=bidirectional)


@pytest.mark.parametrize('missing', ['D', 'z', 'delta_bias', 'softplus'])
def test_matches_sequential_loop_without_one_option(missing):
    inputs = make_inputs(length=37)
    if missing == 'softplus':
        inputs['delta'] = inputs['delta'].abs()
    else:
        inputs[missing] = None
    assert_matches(inputs, delta_softplus=missing != 'softplus')


@pytest.mark.parametrize('length', [1, 2, 37])
def test_two_directions_in_one_call_equal_two_calls(length):
    inputs = make_inputs(channels=8, groups=4, length=length,
                         bidirectional=True)
    fused, _ = run('triton', inputs, True, bidirectional=True)
    half = inputs['u'].shape[1] // 2

    def direction(tensor, part, flip):
        split = half if tensor.dim() == 3 else tensor.shape[1] // 2
        piece = tensor[:, :split] if part == 0 else tensor[:, split:]
        return piece.flip(-1) if flip else piece

    for part in (0, 1):
        flip = part == 1
        one = {
            name: direction(inputs[name], part, flip)
            for name in ('u', 'delta', 'B', 'C')
        }
        one.update(
            z=inputs['z'].flip(-1) if flip else inputs['z'],
            **{name: inputs[name][part * half:(part + 1) * half]
               for name in ('A', 'D', 'delta_bias')})
        single, _ = run('triton', one, True)
        expected = single.flip(-1) if flip else single
        assert_close_to_scale(fused[:, part * half:(part + 1) * half],
                              expected, 1e-6, f'direction {part}')
    # Gradients (z shared by both halves) against the flipping reference.
    assert_matches(inputs, bidirectional=True)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_low_precision_inputs_scan_in_float32(dtype):
    # The loop also scans in float32 from the same rounded inputs: only the
    # rounding of the outputs and gradients to ``dtype`` differs.
    assert_matches(make_inputs(length=40, dtype=dtype),
                              tolerance=1e-2)


def test_strided_inputs_as_the_mixer_passes_them():
    inputs = make_inputs(length=20)
    contiguous, _ = run('triton', inputs, True)
    strided = dict(inputs)
    # delta from a (b, l, d) projection, B / C sliced from a wider tensor.
    strided['delta'] = inputs['delta'].transpose(1, 2).contiguous(
    ).transpose(1, 2)
    wide = torch.cat([inputs['B'], inputs['C']], dim=2)
    strided['B'], strided['C'] = wide.split(inputs['B'].shape[2], dim=2)
    assert not strided['delta'].is_contiguous()
    assert not strided['B'].is_contiguous()
    out, _ = run('triton', strided, True)
    torch.testing.assert_close(out, contiguous, rtol=0, atol=0)


def test_strong_decay_over_long_sequences_stays_finite():
    inputs = make_inputs(length=150, delta_scale=30.)
    inputs['A'] = inputs['A'] * 50
    assert_matches(inputs, delta_softplus=True, tolerance=1e-4)


def test_float64_gradcheck():
    inputs = {
        k: v.requires_grad_()
        for k, v in make_inputs(batch=1, channels=2, length=19, state=2,
                                dtype=torch.float64).items()
    }
    with ops.use_backend('triton'):
        assert torch.autograd.gradcheck(
            lambda *args: ops.selective_scan(*args, delta_softplus=True),
            tuple(inputs.values()), fast_mode=True)


@pytest.mark.skipif(INTERPRETED, reason='compiled kernels on a GPU only '
                    '(TRITON_INTERPRET=0)')
@pytest.mark.parametrize('bidirectional', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_matches_torch_backend_at_vim_tiny_sizes(dtype, bidirectional):
    # A Vim-Ti layer: 2 x 384 channels, 16 states, 197 tokens (224 px).
    inputs = make_inputs(batch=2, channels=768, length=197, state=16,
                         dtype=dtype, bidirectional=bidirectional)
    assert_matches(
        inputs, bidirectional=bidirectional, reference='torch',
        tolerance=1e-4 if dtype == torch.float32 else 1e-2)


@triton.jit
def _affine(scale_left, shift_left, scale_right, shift_right):
    # Not commutative: the order of the operands is checked too.
    return scale_left * scale_right, scale_right * shift_left + shift_right


@triton.jit
def _scan_kernel(scale_ptr, shift_ptr, out_ptr, REVERSE: tl.constexpr):
    rows = tl.arange(0, 4)[:, None] * 8 + tl.arange(0, 8)[None, :]
    _, out = tl.associative_scan(
        (tl.load(scale_ptr + rows), tl.load(shift_ptr + rows)), 1, _affine,
        reverse=REVERSE)
    tl.store(out_ptr + rows, out)


@pytest.mark.skipif(not INTERPRETED, reason='interpreter only')
def test_interpreter_scan_speed_up_keeps_triton_semantics():
    from triton.runtime.interpreter import ScanOps

    from mmvim.ops.triton import interpreter

    assert interpreter.speed_up_interpreted_scans()
    scale, shift = torch.rand(2, 4, 8)
    for reverse in (False, True):
        fast, own = torch.empty(4, 8), torch.empty(4, 8)
        _scan_kernel[(1, )](scale, shift, fast, REVERSE=reverse)
        original = getattr(ScanOps, interpreter.ORIGINAL_SCAN)
        patched = ScanOps.generic_scan
        ScanOps.generic_scan = original
        try:
            _scan_kernel[(1, )](scale, shift, own, REVERSE=reverse)
        finally:
            ScanOps.generic_scan = patched
        torch.testing.assert_close(fast, own, rtol=0, atol=0)


def _in_subprocess(code, **env):
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        timeout=300, env=dict(os.environ, **env))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present')
def test_unavailable_without_a_gpu_unless_interpreted():
    out = _in_subprocess(
        'from mmvim import ops; '
        "print({s.name: s.reason for s in ops.list_backends()}['triton'])",
        TRITON_INTERPRET='0')
    assert 'no CUDA GPU' in out


@pytest.mark.skipif(not INTERPRETED,
                    reason='on a GPU every other test compiles the kernels')
def test_kernels_compile_for_a_gpu():
    # The interpreter runs any Python; this compiles the kernels as a GPU
    # would (to Hopper cubins, with the ptxas triton ships), so code that
    # only the interpreter accepts fails here, on a machine without a GPU.
    code = '''
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mmvim.ops.triton import kernels
# Pointers in the inputs' dtype; the others (state, A, D, partial sums)
# are in the compute dtype.
INPUTS = ('u_ptr', 'delta_ptr', 'B_ptr', 'C_ptr', 'z_ptr', 'y_ptr',
          'grad_y_ptr', 'grad_u_ptr', 'grad_delta_ptr')
for fn in (kernels.selective_scan_fwd_kernel,
           kernels.selective_scan_bwd_kernel):
    for io, compute in (('bf16', tl.float32), ('fp64', tl.float64)):
        flags = dict(D_STATE=16, BLOCK_N=16, BLOCK_D=8, CHUNK=16, HAS_D=True,
                     HAS_Z=True, HAS_DELTA_BIAS=True, DELTA_SOFTPLUS=True,
                     COMPUTE=compute)
        signature = {
            name: 'constexpr' if name in flags else 'i32'
            for name in fn.arg_names}
        for name in fn.arg_names:
            if name.endswith('_ptr'):
                signature[name] = '*' + (io if name in INPUTS else
                                         str(compute))

        compiled = triton.compile(ASTSource(fn, signature, flags),
                                  target=GPUTarget('cuda', 90, 32))
        assert compiled.asm['cubin'], fn.__name__
        print(fn.__name__, io, 'ex2.approx.f32' in compiled.asm['ptx'])
'''
    lines = _in_subprocess(code, TRITON_INTERPRET='0').split('\n')
    # Both compile in both dtypes; float32 decays go through the exp2 unit.
    for kernel in ('fwd', 'bwd'):
        assert f'selective_scan_{kernel}_kernel bf16 True' in lines
        assert f'selective_scan_{kernel}_kernel fp64 False' in lines
