import pytest
import torch

from mmvim.models.layers import RMSNorm


def test_is_x_over_its_root_mean_square_times_weight():
    norm = RMSNorm(6, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, 6)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(norm(x), expected * norm.weight)
    assert not any('bias' in name for name, _ in norm.named_parameters())


def test_unit_weight_gives_unit_root_mean_square():
    out = RMSNorm(64, eps=0.)(torch.randn(3, 64) * 7 + 2)
    torch.testing.assert_close(out.pow(2).mean(-1), torch.ones(3))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_normalises_in_float32_and_keeps_the_input_dtype(dtype):
    norm = RMSNorm(8)
    # Squares of these overflow float16 (max 65504) but not float32.
    x = torch.full((1, 8), 300., dtype=dtype)
    out = norm(x)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), torch.ones(1, 8), rtol=1e-2,
                               atol=1e-2)


def test_gradient_flows_to_input_and_weight():
    norm = RMSNorm(4)
    x = torch.randn(2, 4, requires_grad=True)
    norm(x).sum().backward()
    assert x.grad is not None and norm.weight.grad is not None
    assert torch.autograd.gradcheck(
        lambda t: RMSNorm(4).double()(t), torch.randn(2, 4).double()
        .requires_grad_())
