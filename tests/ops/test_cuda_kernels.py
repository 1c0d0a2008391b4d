"""mamba-ssm's kernel (the ``cuda`` backend) vs the portable backend on a
GPU; skipped (and reported as skipped) where there is no GPU or no
mamba-ssm with its compiled scan."""
import pytest
import torch

from mmvim import ops
from mmvim.ops.registry import load_backend

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU'),
    pytest.mark.skipif(load_backend('cuda')[1] is not None,
                       reason="needs mamba-ssm's compiled scan: "
                       f"{load_backend('cuda')[1]}"),
]


@pytest.fixture(autouse=True)
def reset_backend():
    yield
    ops.set_backend(None)


def run(backend, inputs):
    ops.set_backend(backend)
    leaves = {k: v.detach().clone().requires_grad_()
              for k, v in inputs.items()}
    out = ops.selective_scan(**leaves, delta_softplus=True)
    out.backward(torch.ones_like(out))
    return out, {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize('groups', [None, 2])
def test_kernel_scan_equals_portable_scan(groups):
    gen = torch.Generator('cuda').manual_seed(0)
    b, d, length, n = 2, 64, 300, 16
    bc = (b, n, length) if groups is None else (b, groups, n, length)
    inputs = dict(
        u=torch.randn(b, d, length, device='cuda', generator=gen),
        delta=torch.randn(b, d, length, device='cuda', generator=gen) - 2,
        A=-torch.rand(d, n, device='cuda', generator=gen) * 8,
        B=torch.randn(*bc, device='cuda', generator=gen),
        C=torch.randn(*bc, device='cuda', generator=gen),
        D=torch.randn(d, device='cuda', generator=gen),
        z=torch.randn(b, d, length, device='cuda', generator=gen),
        delta_bias=torch.randn(d, device='cuda', generator=gen) * 0.1)
    out_k, grads_k = run('cuda', inputs)
    out_t, grads_t = run('torch', inputs)
    torch.testing.assert_close(out_k, out_t, rtol=1e-4, atol=1e-4)
    for name in grads_t:
        torch.testing.assert_close(grads_k[name], grads_t[name], rtol=2e-3,
                                   atol=2e-3, msg=name)


def test_fused_directions_equal_two_calls_on_kernels():
    from mmvim.models import VisionMamba
    ops.set_backend('cuda')
    torch.manual_seed(0)
    x = torch.randn(2, 3, 128, 160, device='cuda')
    grads = []
    outs = []
    for fuse in (True, False):
        torch.manual_seed(1)
        model = VisionMamba(dict(embed_dims=64, num_layers=2), img_size=128,
                            fuse_directions=fuse).cuda()
        out = model(x)[0]
        out.pow(2).mean().backward()
        outs.append(out)
        grads.append(model.layers[0].mixer.x_proj_b.weight.grad)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-5)
