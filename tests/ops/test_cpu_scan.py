"""The compiled ``cpu`` backend against the plain token loop."""
import os

import pytest
import torch

from mmvim import ops
from mmvim.ops.registry import load_backend

CPU_OPS = load_backend('cpu')[0]
needs_cpu_ops = pytest.mark.skipif(
    CPU_OPS is None,
    reason=f'cpu backend unavailable: {load_backend("cpu")[1]}')


def make_inputs(batch=2, channels=4, length=23, state=16, groups=None,
                dtype=torch.float32, seed=0, optional=True):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    bc = (batch, state, length) if groups is None else (batch, groups, state,
                                                        length)
    inputs = dict(u=randn(batch, channels, length),
                  delta=randn(batch, channels, length) * 0.5,
                  A=-torch.rand(channels, state, generator=gen,
                                dtype=dtype) * 3,
                  B=randn(*bc), C=randn(*bc), D=None, z=None, delta_bias=None)
    if not optional:
        # Without softplus a negative dt grows the state exponentially,
        # which tests float32's range rather than the scan.
        inputs['delta'] = inputs['delta'].abs()
    else:
        inputs.update(D=randn(channels), z=randn(batch, channels, length),
                      delta_bias=randn(channels) * 0.3)
    return inputs


def run(backend, inputs, delta_softplus, grad_out=None, op='selective_scan',
        **options):
    """Output and the gradients of every tensor input; ``options`` go to the
    op (``average_directions``)."""
    leaves = {k: v.detach().clone().requires_grad_()
              for k, v in inputs.items() if v is not None}
    with ops.use_backend(backend):
        out = getattr(ops, op)(**{**inputs, **leaves},
                               delta_softplus=delta_softplus, **options)
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator()
                               .manual_seed(1)).to(out.dtype)
    grads = torch.autograd.grad(out, list(leaves.values()), grad_out)
    return out, dict(zip(leaves, grads))


def assert_same(a, b, rtol, atol):
    (out_a, grads_a), (out_b, grads_b) = a, b
    torch.testing.assert_close(out_a, out_b, rtol=rtol, atol=atol)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        scale = grads_b[name].abs().max().clamp(min=1)
        torch.testing.assert_close(grads_a[name] / scale,
                                   grads_b[name] / scale, rtol=rtol,
                                   atol=atol, msg=name)


def test_extension_is_built_unless_skipped_on_purpose():
    # make install builds it; only MMVIM_WITH_CPU_OPS=0 may leave it out.
    if os.environ.get('MMVIM_WITH_CPU_OPS') != '0':
        assert CPU_OPS is not None, load_backend('cpu')[1]


@needs_cpu_ops
@pytest.mark.parametrize('bidirectional', [False, True])
@pytest.mark.parametrize('length', [1, 5, 70])
def test_gradcheck_float64(length, bidirectional):
    # 70 tokens: two chunks of the backward's recomputation.
    inputs = make_inputs(batch=1, channels=4, length=length, state=3,
                         groups=2, dtype=torch.float64)
    if bidirectional:
        inputs['z'] = inputs['z'][:, :2]
    names = [k for k, v in inputs.items() if v is not None]
    op = ops.bidirectional_selective_scan if bidirectional \
        else ops.selective_scan

    def scan(*tensors):
        return op(**{**inputs, **dict(zip(names, tensors))},
                  delta_softplus=True)

    leaves = [inputs[k].clone().requires_grad_() for k in names]
    with ops.use_backend('cpu'):
        assert torch.autograd.gradcheck(scan, leaves, eps=1e-6, atol=1e-5)


@needs_cpu_ops
@pytest.mark.parametrize('length', [1, 2, 3, 17, 128, 1025, 4097])
@pytest.mark.parametrize('groups', [None, 2])
@pytest.mark.parametrize('optional', [True, False])
def test_float32_matches_sequential_loop(length, groups, optional):
    """Forward and every gradient; optional: D, z, delta_bias, softplus."""
    inputs = make_inputs(channels=4, length=length, groups=groups,
                         optional=optional, batch=1 if length > 1000 else 2)
    assert_same(run('cpu', inputs, optional),
                run('sequential', inputs, optional), rtol=1e-4, atol=1e-4)


def channel_last(tensor):
    """(b, l, d) memory seen as (b, d, l), as the mixer's projections and
    the compiled conv produce it."""
    return tensor.transpose(1, 2).contiguous().transpose(1, 2)


@needs_cpu_ops
@pytest.mark.parametrize(
    'channels, groups, op',
    [(48, None, 'selective_scan'),  # three whole tiles of 16 lanes
     (40, 2, 'selective_scan'),  # tile 16..31 spans both groups; 8 left
     (64, 2, 'bidirectional_selective_scan'),
     (40, 2, 'bidirectional_selective_scan'),  # tile 16..31 spans both ways
     (96, 4, 'bidirectional_selective_scan')])
@pytest.mark.parametrize('layout', ['contiguous', 'channel_last'])
@pytest.mark.parametrize('optional', [True, False])
def test_lane_tiles_match_sequential_loop(channels, groups, op, layout,
                                          optional):
    """Tiles of 16 channels of one group and one direction scan in vector
    lanes, the others row by row; both against the loop, in either input
    layout (a channel-last u gives a channel-last output)."""
    inputs = make_inputs(channels=channels, length=150, groups=groups,
                         optional=optional)
    if op == 'bidirectional_selective_scan' and optional:
        inputs['z'] = inputs['z'][:, :channels // 2]
    if layout == 'channel_last':
        inputs = {k: channel_last(v) if k in ('u', 'delta', 'z') and
                  v is not None else v for k, v in inputs.items()}
    out, grads = run('cpu', inputs, optional, op=op)
    assert (out.stride(1) == 1) == (layout == 'channel_last')
    assert_same((out, grads), run('sequential', inputs, optional, op=op),
                rtol=1e-4, atol=1e-4)


@needs_cpu_ops
def test_averaged_directions_in_lane_and_row_tiles_match():
    """Averaged, gated directions with halves of 21 channels: lane tiles
    and a row tile in each (AVX2's 8 lanes or AVX-512's 16), each averaging
    into the rows its mirror wrote. Against the loop, gradients included,
    channel-last as the mixer passes u and z."""
    inputs = make_inputs(channels=42, length=150, groups=2)
    inputs['z'] = inputs['z'][:, :21]
    for name in ('u', 'delta', 'z'):
        inputs[name] = channel_last(inputs[name])
    averaged = dict(op='bidirectional_selective_scan', average_directions=True)
    assert_same(run('cpu', inputs, True, **averaged),
                run('sequential', inputs, True, **averaged), rtol=1e-4,
                atol=1e-4)


@needs_cpu_ops
def test_lane_tiles_with_growing_states_match():
    """A > 0 somewhere and dt < 0 without softplus: the lanes' exp2 keeps
    its upper clamp (it drops it only where dt A <= 0 is certain)."""
    inputs = make_inputs(channels=32, length=60, optional=False)
    inputs['A'] = inputs['A'].clone()
    inputs['A'][::3] = 0.05
    inputs['delta'] = inputs['delta'] - 0.2
    assert_same(run('cpu', inputs, False), run('sequential', inputs, False),
                rtol=1e-4, atol=1e-4)


@needs_cpu_ops
def test_chunks_with_and_without_the_exp_clamp_match():
    """The lanes skip exp2's lower clamp (dt A log2 e >= -115) in chunks
    where the largest dt times the most negative A cannot reach it: chunks
    of both kinds, and one of each inside the same call, against the token
    loop (a 64-token chunk with dt ~ 0.02, one with dt A ~ -180, one with a
    single such token)."""
    inputs = make_inputs(batch=1, channels=17, length=3 * 64)
    inputs['A'][:, 0] = -60.
    pre = torch.full((192, ), -4.)
    pre[64:128] = 3.
    pre[150] = 3.
    inputs['delta'][0] = pre
    inputs['delta_bias'].zero_()
    assert_same(run('cpu', inputs, True), run('sequential', inputs, True),
                rtol=1e-4, atol=1e-4)


@needs_cpu_ops
def test_long_memory_channels_keep_float32_accuracy():
    """Slowly decaying channels (dt ~ 2.5e-3, A = -1 .. -16) over 4097
    tokens multiply thousands of decays, so a systematic error of exp2 adds
    up: the compiled scan's error against float64 stays within 4x that of
    torch's own float32 scan (2x with the degree-5 exp2 polynomial; a
    degree-4 one gave 23x)."""
    inputs = make_inputs(batch=1, channels=64, length=4097)
    inputs['A'] = -torch.arange(1., 17.).expand(64, 16).contiguous()
    inputs['delta'] = inputs['delta'] * 0.1 - 6.
    inputs['delta_bias'] = None

    def relative_error(backend):
        with ops.use_backend(backend):
            out = ops.selective_scan(**inputs, delta_softplus=True)
        with ops.use_backend('torch'):
            exact = ops.selective_scan(
                **{k: None if v is None else v.double()
                   for k, v in inputs.items()}, delta_softplus=True)
        return (out.double() - exact).norm() / exact.norm()

    assert relative_error('cpu') < 4 * relative_error('torch')


@needs_cpu_ops
def test_other_state_sizes_match():
    inputs = make_inputs(state=5, length=40, groups=2)
    assert_same(run('cpu', inputs, True), run('sequential', inputs, True),
                rtol=1e-4, atol=1e-4)


@needs_cpu_ops
def test_strided_and_channels_last_inputs():
    inputs = make_inputs(length=90, groups=2)
    strided = dict(inputs)
    for name in ('u', 'delta', 'z'):
        strided[name] = channel_last(inputs[name])
    assert not strided['u'].is_contiguous()
    assert_same(run('cpu', strided, True), run('sequential', inputs, True),
                rtol=1e-4, atol=1e-4)
    # Every other token of a longer tensor.
    doubled = {k: v for k, v in inputs.items()}
    doubled['u'] = torch.repeat_interleave(inputs['u'], 2, dim=-1)[..., ::2]
    assert doubled['u'].stride(-1) == 2
    assert_same(run('cpu', doubled, True), run('sequential', inputs, True),
                rtol=1e-4, atol=1e-4)


@needs_cpu_ops
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('channels', [4, 32])  # rows; lane tiles
def test_half_inputs_keep_a_float32_state(dtype, channels):
    inputs = {k: None if v is None else v.to(dtype)
              for k, v in make_inputs(channels=channels, length=300,
                                      groups=2).items()}
    out, grads = run('cpu', inputs, True)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads.values())
    # The same rounded inputs through the loop in float32.
    as_float = {k: None if v is None else v.float() for k, v in inputs.items()}
    ref_out, ref_grads = run('sequential', as_float, True,
                             grad_out=torch.randn(out.shape, generator=torch
                                                  .Generator().manual_seed(1)
                                                  ).to(dtype).float())
    tol = dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(out.float(), ref_out, **tol)
    for name, grad in grads.items():
        scale = ref_grads[name].abs().max()
        torch.testing.assert_close(grad.float() / scale,
                                   ref_grads[name] / scale, **tol, msg=name)


@needs_cpu_ops
def test_bf16_lanes_round_as_torch_does():
    # Lane tiles convert channel-last bf16 a vector at a time: the output
    # must be the float32 computation on the same values, rounded by torch,
    # bit for bit, and NaN where it is NaN (torch's vector and scalar
    # conversions give NaN different bits).
    inputs = {k: None if v is None else v.to(torch.bfloat16)
              for k, v in make_inputs(channels=64, length=150,
                                      groups=2).items()}
    for name in ('u', 'delta', 'z'):
        inputs[name] = channel_last(inputs[name])
    inputs['u'][0, 3, 40] = float('nan')
    inputs['u'][1, 50, 7] = float('inf')
    with ops.use_backend('cpu'):
        out = ops.selective_scan(**inputs, delta_softplus=True)
        as_float = {k: None if v is None else v.float()
                    for k, v in inputs.items()}
        ref = ops.selective_scan(**as_float, delta_softplus=True)
    expected = ref.to(torch.bfloat16)
    assert out.stride(1) == 1 and expected.isnan().any()
    assert torch.equal(out.isnan(), expected.isnan())
    numbers = ~expected.isnan()
    assert torch.equal(out.view(torch.int16)[numbers],
                       expected.view(torch.int16)[numbers])


@needs_cpu_ops
def test_autocast_runs_the_model_close_to_float32(tiny_vim):
    model = tiny_vim(arch=dict(embed_dims=32, num_layers=2), img_size=32)
    x = torch.randn(1, 3, 32, 32)
    with ops.use_backend('cpu'):
        reference = model(x)[0]
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = model(x)[0]
    error = (out.float() - reference).norm() / reference.norm()
    assert error < 5e-2


@needs_cpu_ops
def test_extreme_decays_stay_finite():
    inputs = make_inputs(length=200, groups=2)
    inputs['A'] = inputs['A'] * 1e4
    inputs['delta'] = inputs['delta'].abs() * 1e3
    out, grads = run('cpu', inputs, True)
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert_same((out, grads), run('sequential', inputs, True), rtol=1e-4,
                atol=1e-4)


@needs_cpu_ops
@pytest.mark.parametrize('backend', ['cpu', 'torch', 'sequential'])
def test_fused_directions_equal_two_flipped_calls(backend):
    inputs = make_inputs(channels=8, length=77, groups=2)
    gate = inputs['z'][:, :4]
    fused = dict(inputs, z=gate)
    out, grads = run(backend, fused, True, op='bidirectional_selective_scan')

    def flip(t):
        return t.flip(-1)

    def two_calls(**kw):
        forward = ops.selective_scan(
            kw['u'][:, :4], kw['delta'][:, :4], kw['A'][:4], kw['B'][:, :1],
            kw['C'][:, :1], kw['D'][:4], kw['z'], kw['delta_bias'][:4], True)
        backward = ops.selective_scan(
            flip(kw['u'][:, 4:]), flip(kw['delta'][:, 4:]), kw['A'][4:],
            flip(kw['B'][:, 1:]), flip(kw['C'][:, 1:]), kw['D'][4:],
            flip(kw['z']), kw['delta_bias'][4:], True)
        return torch.cat([forward, flip(backward)], dim=1)

    leaves = {k: v.detach().clone().requires_grad_() for k, v in fused.items()}
    with ops.use_backend('sequential'):
        ref = two_calls(**leaves)
    ref_grads = torch.autograd.grad(
        ref, list(leaves.values()),
        torch.randn(ref.shape, generator=torch.Generator().manual_seed(1)))
    assert_same((out, grads), (ref, dict(zip(leaves, ref_grads))), rtol=1e-4,
                atol=1e-4)


@needs_cpu_ops
def test_backward_stores_no_full_state_tensor_and_is_deterministic():
    inputs = make_inputs(batch=2, channels=96, length=300, groups=2)
    b, d, length = inputs['u'].shape
    n = inputs['A'].shape[1]
    sizes = []

    def record(tensor):
        sizes.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(record, lambda t: t):
        first = run('cpu', inputs, True)
    assert sizes and max(sizes) < b * d * length * n / 8
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if previous > 1 else 2)
        second = run('cpu', inputs, True)
    finally:
        torch.set_num_threads(previous)
    for name in first[1]:
        assert torch.equal(first[1][name], second[1][name]), name


@needs_cpu_ops
@pytest.mark.parametrize('direction', ['causal', 'reverse', 'both'])
@pytest.mark.parametrize('length', [1, 3, 50])
@pytest.mark.parametrize('channels, layout', [(6, 'channel_last'),
                                              (70, 'channel_last'),
                                              (6, 'contiguous')])
def test_conv_matches_the_portable_conv(direction, length, channels, layout):
    """The mixer's x is a channel-last view of the input projection (each
    token's channels in lane vectors, a channel-last output; the backward
    in blocks of 64 channels); other layouts go row by row. 'both': the two
    directions' convs in one call (segments of 70 channels: 8-channel lane
    vectors and a remainder; a 64-channel block and a remainder)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, length, channels, generator=gen).transpose(1, 2)
    if layout == 'contiguous':
        x = x.contiguous()
    out_channels = 2 * channels if direction == 'both' else channels
    weight = torch.randn(out_channels, 4, generator=gen)
    bias = torch.randn(out_channels, generator=gen)
    results = []
    for backend in ('cpu', 'torch'):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        with ops.use_backend(backend):
            out = ops.bidirectional_causal_conv1d_silu(*leaves) if \
                direction == 'both' else ops.causal_conv1d_silu(
                    *leaves, reverse=direction == 'reverse')
        if backend == 'cpu' and length > 1:
            assert (out.stride(1) == 1) == (layout == 'channel_last')
        grad_out = torch.randn(out.shape, generator=torch.Generator()
                               .manual_seed(1))
        results.append((out, *torch.autograd.grad(out, leaves, grad_out)))
    for cpu, portable in zip(*results):
        torch.testing.assert_close(cpu, portable, rtol=1e-5, atol=1e-5)


@needs_cpu_ops
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('channels', [6, 70, 440])
def test_conv_channel_last_lanes_match_the_row_path_bitwise(channels, dtype):
    """The channel-last forward's lane vectors (4 side by side, then one at
    a time: 440 channels leave 3 single vectors with 8 or 16 lanes) and its
    scalar remainder add the taps in the row path's order and take its
    sigmoid's bits, and bf16's rounding."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 37, channels, generator=gen).to(dtype).transpose(1, 2)
    weight = torch.randn(2 * channels, 4, generator=gen)
    bias = torch.randn(2 * channels, generator=gen)
    with ops.use_backend('cpu'), torch.no_grad():
        lanes = ops.bidirectional_causal_conv1d_silu(x, weight, bias)
        rows = ops.bidirectional_causal_conv1d_silu(x.contiguous(), weight,
                                                    bias)
    assert lanes.stride(1) == 1 and rows.stride(2) == 1
    assert torch.equal(lanes, rows)


@needs_cpu_ops
@pytest.mark.parametrize('layout', ['contiguous', 'channel_last'])
def test_conv_gradcheck_float64(layout):
    gen = torch.Generator().manual_seed(0)
    leaves = [torch.randn(*shape, generator=gen, dtype=torch.float64)
              for shape in ((1, 3, 7), (3, 4), (3, ))]
    if layout == 'channel_last':
        leaves[0] = channel_last(leaves[0])
    leaves = [leaf.requires_grad_() for leaf in leaves]
    with ops.use_backend('cpu'):
        for reverse in (False, True):
            assert torch.autograd.gradcheck(
                lambda x, w, b: ops.causal_conv1d_silu(x, w, b, reverse),
                leaves)
        both = [leaves[0]] + [
            torch.cat([leaf, leaf.flip(0)]).detach().requires_grad_()
            for leaf in leaves[1:]]
        assert torch.autograd.gradcheck(ops.bidirectional_causal_conv1d_silu,
                                        both)
