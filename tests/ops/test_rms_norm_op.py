"""mmvim.ops.rms_norm: the cpu backend's inference kernel against torch's
formula, and when each of them runs."""
import pytest
import torch

from mmvim import ops
from mmvim.ops import library, registry


def cpu_backend():
    module, reason = registry.load_backend('cpu')
    if reason is not None:
        pytest.skip(f'cpu unavailable here: {reason}')
    return module


@pytest.fixture
def counted_kernel(monkeypatch):
    """The cpu backend's rms_norm, counting its calls."""
    module = cpu_backend()
    calls = []
    kernel = module.rms_norm

    def counted(*args):
        calls.append(args)
        return kernel(*args)

    monkeypatch.setattr(module, 'rms_norm', counted)
    return calls


# Widths around the kernel's 16 partial sums, Vim-Ti's and Vim-S's; leading
# dimensions of one, two and three.
@pytest.mark.parametrize('shape', [(1, 1), (3, 15), (2, 5, 16), (4, 17),
                                   (1, 7, 192), (2, 3, 4, 384)])
def test_kernel_agrees_with_the_formula(shape):
    operator = cpu_backend().rms_norm
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen) * 3 + 1
    weight = torch.randn(shape[-1], generator=gen)
    out = operator(x, weight, 1e-5)
    # Only the sum of squares is added in another order: within a few ulp.
    torch.testing.assert_close(out, ops.rms_norm_formula(x, weight, 1e-5),
                               rtol=2e-6, atol=1e-6)
    assert out.shape == x.shape and out.is_contiguous()


def test_kernel_reads_a_strided_input():
    x = torch.randn(8, 24).t()  # (24, 8), not contiguous
    weight = torch.rand(8)
    torch.testing.assert_close(cpu_backend().rms_norm(x, weight, 1e-6),
                               ops.rms_norm_formula(x, weight, 1e-6),
                               rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize('shape', [(3, 15), (2, 5, 16), (130, 192)])
def test_gradients_agree_with_the_formula(shape):
    # 130 rows: three blocks of the backward's weight sums.
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen) * 3 + 1
    weight = torch.randn(shape[-1], generator=gen)
    grad_out = torch.randn(shape, generator=gen)
    cpu_backend()
    leaves = [t.clone().requires_grad_() for t in (x, weight)]
    with ops.use_backend('cpu'):
        out = ops.rms_norm(*leaves, 1e-5)
    assert 'rms_norm_cpu' in type(out.grad_fn).__name__
    got = torch.autograd.grad(out, leaves, grad_out)
    wide = [t.double().requires_grad_() for t in (x, weight)]
    expected = torch.autograd.grad(ops.rms_norm_formula(*wide, 1e-5), wide,
                                   grad_out.double())
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.double(), b, rtol=1e-5,
                                   atol=1e-5 * b.abs().max().item())


def test_kernel_runs_with_and_without_a_gradient(counted_kernel):
    x = torch.randn(2, 5, 16)
    weight = torch.rand(16, requires_grad=True)
    with ops.use_backend('cpu'):
        with torch.no_grad():
            ops.rms_norm(x, weight, 1e-5)
        out = ops.rms_norm(x, weight, 1e-5)
    assert len(counted_kernel) == 2
    out.sum().backward()
    torch.testing.assert_close(
        weight.grad, (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))
        .sum((0, 1)))


def test_formula_for_other_dtypes_and_backends(counted_kernel):
    x = torch.randn(2, 5, 16)
    with torch.no_grad(), ops.use_backend('cpu'):
        for x_dtype, weight_dtype in ((torch.bfloat16, torch.float32),
                                      (torch.float32, torch.bfloat16),
                                      (torch.float64, torch.float64)):
            out = ops.rms_norm(x.to(x_dtype), torch.ones(16,
                                                         dtype=weight_dtype),
                               1e-5)
            assert out.dtype == x_dtype
    with torch.no_grad(), ops.use_backend('torch'):
        out = ops.rms_norm(x, torch.ones(16), 1e-5)
    assert not counted_kernel
    assert torch.equal(out, ops.rms_norm_formula(x, torch.ones(16), 1e-5))


def test_traced_calls_see_the_formula():
    # A jit trace (the FLOP counter's) records torch's operators; torch.compile
    # and torch.export are tested on the whole model (test_compile_export).
    cpu_backend()
    weight = torch.rand(16)
    with torch.no_grad(), ops.use_backend('cpu'):
        traced = torch.jit.trace(lambda t: ops.rms_norm(t, weight, 1e-5),
                                 torch.randn(3, 16), check_trace=False)
    assert 'rms_norm_cpu' not in str(traced.graph)
    assert 'aten::rsqrt' in str(traced.graph)


def test_operators_have_their_schemas_and_pass_opcheck():
    forward = cpu_backend().rms_norm
    backward = torch.ops.mmvim.rms_norm_cpu_backward.default
    for operator, name in ((forward, 'rms_norm'),
                           (backward, 'rms_norm_backward')):
        written = str(operator._schema)
        assert written[written.index('('):] == library.SCHEMAS[name]
    x = torch.randn(2, 5, 24, requires_grad=True)
    weight = torch.rand(24, requires_grad=True)
    torch.library.opcheck(forward, (x, weight, 1e-5))
    torch.library.opcheck(backward, (x.detach(), weight.detach(), 1e-5,
                                     torch.randn(2, 5, 24)))


def test_operator_names_a_wrong_dtype_or_weight():
    operator = cpu_backend().rms_norm
    with pytest.raises(RuntimeError, match='must be float32'):
        operator(torch.randn(2, 4).double(), torch.ones(4).double(), 1e-5)
    with pytest.raises(RuntimeError, match='weight must be 1-D'):
        operator(torch.randn(2, 4), torch.ones(5), 1e-5)


def test_compiled_calls_see_the_formula():
    cpu_backend()
    weight = torch.rand(16)
    graphs = []

    def record(graph_module, example_inputs):
        graphs.append(str(graph_module.graph))
        return graph_module

    with torch.no_grad(), ops.use_backend('cpu'):
        compiled = torch.compile(lambda t: ops.rms_norm(t, weight, 1e-5),
                                 backend=record, fullgraph=True)
        compiled(torch.randn(3, 16))
    assert len(graphs) == 1
    assert 'rms_norm_cpu' not in graphs[0] and 'rsqrt' in graphs[0]


def test_gradients_do_not_depend_on_the_thread_count():
    cpu_backend()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(300, 48, generator=gen)  # five blocks of 64 rows
    weight = torch.randn(48, generator=gen)
    grad_out = torch.randn(300, 48, generator=gen)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            leaves = [t.clone().requires_grad_() for t in (x, weight)]
            with ops.use_backend('cpu'):
                out = ops.rms_norm(*leaves, 1e-5)
            results.append(torch.autograd.grad(out, leaves, grad_out))
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results):
        assert torch.equal(one, two)


def test_backward_operator_reads_a_bf16_gradient_and_names_a_wrong_shape():
    backward = torch.ops.mmvim.rms_norm_cpu_backward.default
    cpu_backend()
    x, weight = torch.randn(3, 16), torch.rand(16)
    grad_out = torch.randn(3, 16).bfloat16()
    got = backward(x, weight, 1e-5, grad_out)
    expected = backward(x, weight, 1e-5, grad_out.float())
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="grad_out must have x's shape"):
        backward(x, weight, 1e-5, torch.randn(2, 16))
    with pytest.raises(RuntimeError, match="grad_out must have x's shape"):
        backward(x, weight, 1e-5, torch.randn(16, 3))  # as many values
