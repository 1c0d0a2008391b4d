"""Inputs no scan can take are a ValueError naming the argument, on every
backend alike (a kernel would read out of bounds or ignore extra entries)."""
import pytest
import torch

from mmvim import ops

CPU_BACKENDS = [s.name for s in ops.list_backends()
                if s.available and (s.device_types is None
                                    or 'cpu' in s.device_types)]


def good(batch=1, channels=4, length=5, state=3, groups=2):
    return dict(u=torch.randn(batch, channels, length),
                delta=torch.rand(batch, channels, length),
                A=-torch.rand(channels, state),
                B=torch.randn(batch, groups, state, length),
                C=torch.randn(batch, groups, state, length),
                D=torch.randn(channels),
                z=torch.randn(batch, channels, length),
                delta_bias=torch.randn(channels))


BAD = {
    'u': dict(u=torch.randn(4, 5)),
    'delta': dict(delta=torch.rand(1, 4, 6)),
    'A': dict(A=-torch.rand(5, 3)),
    'B': dict(B=torch.randn(1, 3, 3, 5), C=torch.randn(1, 3, 3, 5)),
    'C': dict(C=torch.randn(1, 2, 3, 4)),
    'D': dict(D=torch.randn(5)),
    'delta_bias': dict(delta_bias=torch.randn(8)),
    'z': dict(z=torch.randn(1, 4, 4)),
}


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('argument', list(BAD))
def test_misshaped_argument_is_named(backend, argument):
    inputs = dict(good(), **BAD[argument])
    with ops.use_backend(backend), pytest.raises(
            ValueError, match=f'selective_scan: {argument} has shape'):
        ops.selective_scan(**inputs)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('empty', ['batch', 'length', 'state'])
def test_zero_size_dimensions_are_refused(backend, empty):
    inputs = good(**{empty: 0})
    with ops.use_backend(backend), pytest.raises(ValueError,
                                                 match='has shape'):
        ops.selective_scan(**inputs)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_bidirectional_needs_even_groups_and_a_shared_gate(backend):
    with ops.use_backend(backend):
        with pytest.raises(ValueError, match='even number of groups'):
            ops.bidirectional_selective_scan(**dict(
                good(groups=1), z=torch.randn(1, 2, 5)))
        with pytest.raises(ValueError, match='z has shape.*shared'):
            ops.bidirectional_selective_scan(**good())
        out = ops.bidirectional_selective_scan(**dict(
            good(), z=torch.randn(1, 2, 5)))
    assert out.shape == (1, 4, 5)
