"""The backend registry: what auto picks, forcing, listing, new backends."""
import os
import subprocess
import sys
import types

import pytest
import torch

from mmvim import ops
from mmvim.ops import registry


@pytest.fixture(autouse=True)
def reset_forced_backend(monkeypatch):
    monkeypatch.delenv(ops.BACKEND_ENV, raising=False)
    yield
    ops.set_backend(None)


@pytest.fixture
def cpu_extension_missing(monkeypatch):
    """Pretend the compiled CPU scan was not built."""
    real = registry.load_backend
    monkeypatch.setattr(registry, 'load_backend', lambda name: (
        (None, 'RuntimeError: extension not built: test') if name == 'cpu'
        else real(name)))


def test_auto_order_is_cpu_then_torch_and_cuda_then_triton_then_torch():
    assert ops.auto_order('cpu') == ('cpu', 'torch')
    assert ops.auto_order('cuda') == ('cuda', 'triton', 'torch')
    assert 'sequential' not in ops.auto_order('mps')


def test_auto_on_cpu_takes_the_compiled_kernel_when_built():
    cpu = {s.name: s for s in ops.list_backends()}['cpu']
    assert ops.get_backend('cpu') == ('cpu' if cpu.available else 'torch')


def test_auto_falls_back_to_torch_without_the_extension(
        cpu_extension_missing):
    assert ops.get_backend('cpu') == 'torch'
    ops.set_backend('cpu')
    with pytest.raises(RuntimeError, match='extension not built.*pip install'):
        ops.get_backend('cpu')


@pytest.mark.parametrize('value', ['', '  ', 'auto', 'AUTO'])
def test_empty_or_auto_variable_means_auto(monkeypatch, value):
    monkeypatch.setenv(ops.BACKEND_ENV, value)
    assert ops.requested_backend() == 'auto'


def test_unknown_names_list_the_choices(monkeypatch):
    with pytest.raises(ValueError, match="set_backend.*'cpu'.*'sequential'"):
        ops.set_backend('fast')
    monkeypatch.setenv(ops.BACKEND_ENV, 'fast')
    with pytest.raises(ValueError, match=r"\$MMVIM_OPS_BACKEND.*'torch'"):
        ops.get_backend('cpu')


def test_set_backend_overrides_the_variable_and_use_backend_restores(
        monkeypatch):
    monkeypatch.setenv(ops.BACKEND_ENV, 'torch')
    ops.set_backend('sequential')
    assert ops.get_backend('cpu') == 'sequential'
    with ops.use_backend('torch'):
        assert ops.get_backend('cpu') == 'torch'
        with pytest.raises(RuntimeError):
            with ops.use_backend('cuda'):
                ops.get_backend('cpu')
        assert ops.get_backend('cpu') == 'torch'
    assert ops.requested_backend() == 'sequential'
    ops.set_backend(None)
    assert ops.requested_backend() == 'torch'


def test_forcing_a_backend_where_it_cannot_run_says_why_and_how():
    ops.set_backend('cuda')
    # mamba-ssm is not installed on this machine (or runs only on CUDA).
    with pytest.raises(RuntimeError, match='cuda.*(unavailable.*requirements/'
                       'cuda.txt|runs on cuda tensors)'):
        ops.selective_scan(*[torch.zeros(1, 2, 3)] * 2, torch.zeros(2, 1),
                           torch.zeros(1, 1, 3), torch.zeros(1, 1, 3))
    ops.set_backend('cpu')
    if ops.get_backend('cpu') == 'cpu':
        with pytest.raises(RuntimeError, match='runs on cpu tensors.*meta'):
            registry.resolve('meta')


def test_list_backends_reports_every_backend_and_why_not():
    statuses = {s.name: s for s in ops.list_backends()}
    assert set(statuses) == {'cuda', 'triton', 'cpu', 'torch', 'sequential'}
    assert statuses['torch'].available and statuses['sequential'].available
    for status in statuses.values():
        assert status.available == (status.reason is None)
    if not statuses['cuda'].available:
        assert 'mamba_ssm' in statuses['cuda'].reason or \
            'causal_conv1d' in statuses['cuda'].reason


def test_listing_command_prints_every_backend():
    result = subprocess.run([sys.executable, '-m', 'mmvim.ops'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ('cuda', 'triton', 'cpu', 'torch', 'sequential'):
        assert f'\n{name} ' in '\n' + result.stdout
    assert 'cpu tensors: ' in result.stdout


def test_a_new_backend_runs_without_touching_the_mixer(tiny_vim):
    calls = []
    portable = registry.load_backend('torch')[0]

    def counted(name):
        def run(*args):
            calls.append(name)
            return getattr(portable, name)(*args)
        return run

    module = types.ModuleType('counting_backend')
    for name in ('selective_scan', 'bidirectional_selective_scan',
                 'causal_conv1d_silu'):
        setattr(module, name, counted(name))
    sys.modules['counting_backend'] = module
    try:
        ops.register_backend(ops.Backend('counting', 'counting_backend',
                                         'test', fix='none'))
        model = tiny_vim(arch=dict(embed_dims=16, num_layers=2), img_size=32)
        with ops.use_backend('counting'):
            model(torch.zeros(1, 3, 32, 32))
        assert calls.count('bidirectional_selective_scan') == 2
        assert calls.count('causal_conv1d_silu') == 4
    finally:
        ops.unregister_backend('counting')
        del sys.modules['counting_backend']
    assert 'counting' not in ops.backend_names()


def test_import_survives_broken_accelerators(tmp_path):
    # Packages that raise on import, as the released wheels do without their
    # compiled extensions; and a CPU extension that cannot load.
    for name in ('mamba_ssm', 'causal_conv1d', 'triton'):
        (tmp_path / name).mkdir()
        (tmp_path / name / '__init__.py').write_text(
            "raise OSError('undefined symbol: _ZN3c10')")
    code = ('import sys; sys.modules["mmvim.ops._cpu_scan"] = None; '
            'import mmvim, torch; from mmvim.models import VisionMamba; '
            'm = VisionMamba(dict(embed_dims=16, num_layers=1)); '
            'm(torch.zeros(1, 3, 32, 32)); '
            'r = {s.name: s.reason for s in mmvim.ops.list_backends()}; '
            "print(r['cpu']); print(r['triton']); "
            "print(mmvim.ops.get_backend('cuda'), "
            "mmvim.ops.get_backend('cpu'))")
    result = subprocess.run([sys.executable, '-c', code],
                            env=dict(os.environ, PYTHONPATH=str(tmp_path)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    cpu_reason, triton_reason, chosen = result.stdout.strip().splitlines()
    assert cpu_reason.startswith('RuntimeError: extension not built')
    assert 'undefined symbol' in triton_reason
    assert chosen == 'torch torch'


def test_causal_conv_only_sees_the_past_and_reverse_the_future():
    x = torch.randn(2, 3, 10)
    weight, bias = torch.randn(3, 4), torch.randn(3)
    out = ops.causal_conv1d_silu(x, weight, bias)
    changed = x.clone()
    changed[..., 6:] += 1.
    out_changed = ops.causal_conv1d_silu(changed, weight, bias)
    torch.testing.assert_close(out[..., :6], out_changed[..., :6])
    assert not torch.allclose(out[..., 6:], out_changed[..., 6:])
    expected = torch.nn.functional.silu(
        sum(weight[:, k, None] * torch.nn.functional.pad(x, (3 - k, 0))[
            ..., :10] for k in range(4)) + bias[:, None])
    torch.testing.assert_close(out, expected)
    reverse = ops.causal_conv1d_silu(x, weight, bias, reverse=True)
    flipped = ops.causal_conv1d_silu(x.flip(-1), weight, bias).flip(-1)
    torch.testing.assert_close(reverse, flipped)


def test_conv_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match='weight'):
        ops.causal_conv1d_silu(torch.zeros(1, 3, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='bias'):
        ops.causal_conv1d_silu(torch.zeros(1, 3, 5), torch.zeros(3, 4),
                               torch.zeros(2))


def test_a_tool_backend_is_seen_only_while_it_runs(tiny_vim):
    from mmvim.analysis.complexity import count_complexity
    model = tiny_vim(arch=dict(embed_dims=16, num_layers=1), img_size=32)
    stats = count_complexity(model, (torch.zeros(1, 3, 32, 32), ))
    assert stats['scan_flops'] > 0
    assert 'flop_count' not in ops.backend_names()
    assert ops.requested_backend() == 'auto'
