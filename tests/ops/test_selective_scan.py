"""The portable chunked scan (the ``torch`` backend) against the plain
token loop (``sequential``)."""
import pytest
import torch

from mmvim import ops
from mmvim.ops import portable_scan


def selective_scan_torch(**inputs):
    with ops.use_backend('torch'):
        return ops.selective_scan(**inputs)


def selective_scan_sequential(**inputs):
    with ops.use_backend('sequential'):
        return ops.selective_scan(**inputs)


def make_inputs(batch=2, channels=4, length=23, state=3, groups=None,
                dtype=torch.float64, delta_scale=0.5, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    bc_shape = (batch, state, length) if groups is None else (batch, groups,
                                                             state, length)
    return dict(
        u=randn(batch, channels, length),
        delta=randn(batch, channels, length) * delta_scale,
        A=-torch.rand(channels, state, generator=gen, dtype=dtype) * 3,
        B=randn(*bc_shape),
        C=randn(*bc_shape),
        D=randn(channels),
        z=randn(batch, channels, length),
        delta_bias=randn(channels) * 0.3)


def assert_matches_sequential_loop(inputs, delta_softplus):
    """Output and every input's gradient equal the plain loop's (float64)."""
    tensors = {k: v.requires_grad_() for k, v in inputs.items()
               if v is not None}
    fast = selective_scan_torch(**inputs, delta_softplus=delta_softplus)
    slow = selective_scan_sequential(**inputs, delta_softplus=delta_softplus)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
    grad_out = torch.randn_like(fast)
    fast_grads = torch.autograd.grad(fast, list(tensors.values()), grad_out)
    slow_grads = torch.autograd.grad(slow, list(tensors.values()), grad_out)
    for name, a, b in zip(tensors, fast_grads, slow_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)


@pytest.mark.parametrize('groups', [None, 2])
@pytest.mark.parametrize('optional', [True, False])
def test_matches_sequential_loop_forward_and_backward(groups, optional):
    inputs = make_inputs(groups=groups)
    if not optional:
        inputs.update(D=None, z=None, delta_bias=None)
    assert_matches_sequential_loop(inputs, delta_softplus=optional)


@pytest.mark.parametrize('groups', [None, 2])
@pytest.mark.parametrize('length', [1, 11])
def test_gradcheck_float64(groups, length):
    # 11 tokens: chunks of 3, the last one padded, so the carries of both
    # passes and the padding are exercised.
    inputs = make_inputs(batch=1, length=length, state=2, groups=groups)
    names = list(inputs)

    def scan(*tensors):
        return selective_scan_torch(**dict(zip(names, tensors)),
                                    delta_softplus=True)

    assert torch.autograd.gradcheck(
        scan, tuple(t.requires_grad_() for t in inputs.values()))


def test_strong_decay_over_long_sequences_stays_finite_and_exact():
    # dt*A of about -45 per token: a closed form with exp(cumulative decay)
    # would need exp(180000) over these 4096 tokens.
    inputs = make_inputs(batch=1, channels=2, length=4096, state=2,
                         delta_scale=1.0)
    inputs['delta_bias'] = torch.full((2, ), 15., dtype=torch.float64)
    inputs['A'] = torch.full((2, 2), -3., dtype=torch.float64)
    fast = selective_scan_torch(**inputs, delta_softplus=True)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(
        fast, selective_scan_sequential(**inputs, delta_softplus=True))


def test_float32_long_sequence_matches_float64_loop():
    inputs = make_inputs(batch=1, channels=8, length=4100, state=4,
                         dtype=torch.float32, delta_scale=2.0)
    inputs = {k: v.requires_grad_() for k, v in inputs.items()}
    fast = selective_scan_torch(**inputs, delta_softplus=True)
    exact = selective_scan_sequential(
        **{k: v.double() for k, v in inputs.items()}, delta_softplus=True)
    torch.testing.assert_close(fast.double(), exact, rtol=1e-4, atol=1e-4)
    fast.sum().backward()
    assert all(torch.isfinite(v.grad).all() for v in inputs.values())


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_low_precision_inputs_scan_in_float32(dtype):
    inputs = make_inputs(dtype=torch.float32, length=40)
    low = {k: v.to(dtype) if k in ('u', 'delta', 'z') else v
           for k, v in inputs.items()}
    out = selective_scan_torch(**low, delta_softplus=True)
    assert out.dtype == dtype
    reference = selective_scan_sequential(
        **{k: v.float() for k, v in low.items()}, delta_softplus=True)
    torch.testing.assert_close(out.float(), reference, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize('block_bytes', [1, 200, 1200, None])
def test_blocks_match_the_sequential_loop(monkeypatch, block_bytes):
    # A group's 8 channels take 576 bytes per position. 1 byte: one channel
    # per block; 200: blocks of 3 channels, the last one shorter; 1200: both
    # batch rows in one block; None: the whole tensors at once, as on a GPU.
    if block_bytes is None:
        monkeypatch.setattr(portable_scan, '_blocks', lambda u, B: [
            portable_scan._Block(slice(None), slice(None), -1)])
    else:
        monkeypatch.setattr(portable_scan, 'CPU_BLOCK_BYTES', block_bytes)
    assert_matches_sequential_loop(
        make_inputs(channels=16, groups=2, length=9), delta_softplus=True)
