import os
import subprocess
import sys

import pytest
import torch

from mmvim import ops
from mmvim.ops import backend


@pytest.fixture
def no_kernels(monkeypatch):
    """Pretend mamba-ssm / causal-conv1d are installed but broken."""
    monkeypatch.setitem(sys.modules, 'causal_conv1d', None)
    monkeypatch.setitem(sys.modules, 'mamba_ssm', None)
    backend.load_cuda_kernels.cache_clear()
    yield
    backend.load_cuda_kernels.cache_clear()


@pytest.fixture(autouse=True)
def reset_forced_backend():
    yield
    ops.set_backend(None)


def test_cpu_runs_portable_ops_whatever_is_requested(monkeypatch):
    for choice in ('auto', 'torch'):
        monkeypatch.setenv(ops.BACKEND_ENV, choice)
        assert ops.get_backend('cpu') == 'torch'


def test_forcing_cuda_without_kernels_is_a_clear_error(monkeypatch,
                                                       no_kernels):
    monkeypatch.setenv(ops.BACKEND_ENV, 'cuda')
    with pytest.raises(RuntimeError, match='cannot be imported'):
        backend.backend_for('cuda')
    with pytest.raises(RuntimeError, match='tensors are on cpu'):
        ops.selective_scan(*[torch.zeros(1, 2, 3)] * 2, torch.zeros(2, 1),
                           torch.zeros(1, 1, 3), torch.zeros(1, 1, 3))


def test_auto_falls_back_to_portable_ops_without_kernels(no_kernels):
    assert backend.backend_for('cuda') == 'torch'
    kernels, reason = backend.load_cuda_kernels()
    assert kernels is None and 'causal_conv1d' in reason


def test_set_backend_overrides_environment_and_validates(monkeypatch):
    monkeypatch.setenv(ops.BACKEND_ENV, 'cuda')
    ops.set_backend('torch')
    assert ops.requested_backend() == 'torch'
    assert ops.get_backend('cpu') == 'torch'
    with pytest.raises(ValueError, match='Unknown mmvim ops backend'):
        ops.set_backend('triton')
    monkeypatch.setenv(ops.BACKEND_ENV, 'fast')
    ops.set_backend(None)
    with pytest.raises(ValueError, match='MMVIM_OPS_BACKEND'):
        ops.requested_backend()


def test_import_survives_broken_accelerators(tmp_path):
    # Packages that raise on import, as the released wheels do without their
    # compiled extensions.
    for name in ('mamba_ssm', 'causal_conv1d'):
        (tmp_path / name).mkdir()
        (tmp_path / name / '__init__.py').write_text(
            "raise OSError('undefined symbol: _ZN3c10')")
    code = ('import mmvim, torch; from mmvim.models import VisionMamba; '
            'm = VisionMamba(dict(embed_dims=16, num_layers=1)); '
            'm(torch.zeros(1, 3, 32, 32)); '
            "print(mmvim.ops.get_backend('cuda'))")
    result = subprocess.run([sys.executable, '-c', code],
                            env=dict(os.environ, PYTHONPATH=str(tmp_path)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith('torch')


def test_causal_conv_only_sees_the_past():
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
