import pytest
import torch
import torch.nn.functional as F

from mmvim import ops
from mmvim.analysis.scan_speed import (D_STATE, DT_RANK, SCAN_CALLS,
                                       VIM_TINY_CHANNELS, output_gradient,
                                       scan_call, scan_inputs)


def test_inputs_are_one_fused_two_direction_call_and_repeatable():
    inputs = scan_inputs(length=5, batch=2)
    assert inputs['u'].shape == (2, VIM_TINY_CHANNELS, 5)
    assert inputs['A'].shape == (VIM_TINY_CHANNELS, D_STATE)
    assert inputs['B'].shape == (2, 2, D_STATE, 5)
    assert inputs['delta'].shape == (2, 2, DT_RANK, 5)  # low-rank factor
    assert inputs['delta_weight'].shape == (VIM_TINY_CHANNELS, DT_RANK)
    assert inputs['z'].shape == (2, VIM_TINY_CHANNELS // 2, 5)
    # The mixer's layouts: u, z are views of (b, l, d) projections; the
    # delta factor, B and C views of token-major (b, 2, l, k) stacks.
    assert all(inputs[key].stride(1) == 1 for key in ('u', 'z'))
    assert all(inputs[key].stride(-2) == 1 for key in ('delta', 'B', 'C'))
    assert (inputs['A'] < 0).all()  # decaying states
    again = scan_inputs(length=5, batch=2)
    assert all(torch.equal(inputs[key], again[key]) for key in inputs)
    with ops.use_backend('torch'):
        out = ops.bidirectional_selective_scan(**inputs, delta_softplus=True)
    assert out.shape == (2, VIM_TINY_CHANNELS, 5)
    assert torch.isfinite(out).all()


def test_the_calls_without_parts_compute_the_same_scan():
    # --parts' differences are only costs if each call is the mixer's
    # computation with the part moved out of the kernel, not a different one.
    inputs = scan_inputs(length=7, batch=2)
    with ops.use_backend('torch'):
        out = {
            call: ops.bidirectional_selective_scan(**scan_call(inputs, call))
            for call in SCAN_CALLS
        }
    assert out['mixer call'].shape == (2, VIM_TINY_CHANNELS // 2, 7)
    torch.testing.assert_close(out['delta given whole'], out['mixer call'])
    torch.testing.assert_close(
        out['delta whole, no gate'] * F.silu(inputs['z']), out['mixer call'])
    assert not torch.allclose(out['delta whole, no gate'], out['mixer call'])
    whole = scan_call(inputs, 'delta given whole')
    assert 'delta_weight' not in whole and not whole.get('delta_softplus')
    assert whole['delta'].shape == inputs['u'].shape
    assert whole['delta'].stride(1) == 1  # channel-last, as u
    with pytest.raises(ValueError, match='the calls are'):
        scan_call(inputs, 'no scan')


def test_training_gradient_is_laid_out_as_the_mixers():
    # The mixer's scan gets its output gradient channel-last (out_proj's
    # backward, transposed); a broadcast one would time another kernel path.
    inputs = scan_inputs(length=6, batch=2, dtype=torch.bfloat16)
    gradient = output_gradient(inputs)
    with ops.use_backend('torch'):
        out = ops.bidirectional_selective_scan(
            **scan_call(inputs, 'mixer call'))
    assert gradient.shape == out.shape == (2, VIM_TINY_CHANNELS // 2, 6)
    assert gradient.stride(1) == 1 and gradient.dtype == torch.bfloat16
    assert gradient.std() > 0.5  # values, not a broadcast constant
