"""The backend registry: what auto picks, forcing (per thread and per
process), listing, new backends, broken accelerators."""
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest
import torch

import mmvim
from mmvim import ops
from mmvim.ops import registry


@pytest.fixture(autouse=True)
def reset_forced_backend(monkeypatch):
    monkeypatch.delenv(ops.BACKEND_ENV, raising=False)
    ops.set_backend(None)
    yield
    monkeypatch.delenv(ops.BACKEND_ENV, raising=False)
    ops.set_backend(None)


@pytest.fixture
def cpu_extension_missing():
    """The ``cpu`` backend re-registered on a module that does not import,
    as when the library was not built."""
    real = registry._BACKENDS['cpu']
    ops.register_backend(
        dataclasses.replace(real, module='mmvim.ops.backends.absent'))
    yield
    ops.register_backend(real)


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
    with pytest.raises(RuntimeError,
                       match="'cpu'.*unavailable.*No module.*pip install"):
        ops.get_backend('cpu')


@pytest.mark.parametrize('value', ['', '  ', 'auto', 'AUTO'])
def test_empty_or_auto_variable_means_auto(monkeypatch, value):
    monkeypatch.setenv(ops.BACKEND_ENV, value)
    ops.set_backend(None)
    assert ops.requested_backend() == 'auto'


@pytest.mark.slow
def test_the_variable_is_read_at_import_and_by_set_backend_none(monkeypatch):
    monkeypatch.setenv(ops.BACKEND_ENV, 'sequential')
    # Not per call: a forward pass never reads the environment.
    assert ops.requested_backend() == 'auto'
    ops.set_backend(None)
    assert ops.requested_backend() == 'sequential'
    code = 'from mmvim import ops; print(ops.requested_backend())'
    result = subprocess.run([sys.executable, '-c', code], text=True,
                            capture_output=True, timeout=120,
                            env=dict(os.environ, MMVIM_OPS_BACKEND='torch'))
    assert result.stdout.strip() == 'torch', result.stderr


def test_unknown_names_list_the_choices(monkeypatch):
    with pytest.raises(ValueError, match="set_backend.*'cpu'.*'sequential'"):
        ops.set_backend('fast')
    with pytest.raises(ValueError, match="use_backend.*'torch'"):
        with ops.use_backend('fast'):
            pass
    monkeypatch.setenv(ops.BACKEND_ENV, 'fast')
    ops.set_backend(None)  # reading a bad value is not yet an error
    with pytest.raises(ValueError, match=r"\$MMVIM_OPS_BACKEND.*'torch'"):
        ops.get_backend('cpu')


def test_set_backend_overrides_the_variable_and_use_backend_restores(
        monkeypatch):
    monkeypatch.setenv(ops.BACKEND_ENV, 'torch')
    ops.set_backend(None)
    ops.set_backend('sequential')
    assert ops.get_backend('cpu') == 'sequential'
    with ops.use_backend('torch'):
        assert ops.get_backend('cpu') == 'torch'
        with pytest.raises(RuntimeError):
            with ops.use_backend('cuda'):
                ops.get_backend('cpu')
        assert ops.get_backend('cpu') == 'torch'
        with ops.use_backend(None):
            assert ops.requested_backend() == 'sequential'
    assert ops.requested_backend() == 'sequential'
    ops.set_backend(None)
    assert ops.requested_backend() == 'torch'


def test_use_backend_is_per_thread():
    # Overlapping blocks in two threads: each sees only its own choice, and
    # the process is back on auto when both have left.
    seen = {}
    entered = [threading.Event(), threading.Event()]
    leave = threading.Event()

    def worker(index, name):
        with ops.use_backend(name):
            entered[index].set()
            entered[1 - index].wait(10)
            seen[f'{name} inside'] = ops.requested_backend()
            leave.wait(10)
        seen[f'{name} after'] = ops.requested_backend()

    threads = [threading.Thread(target=worker, args=(0, 'sequential')),
               threading.Thread(target=worker, args=(1, 'torch'))]
    for thread in threads:
        thread.start()
    for event in entered:
        event.wait(10)
    assert ops.requested_backend() == 'auto'  # this thread never chose
    leave.set()
    for thread in threads:
        thread.join(10)
    assert seen == {'sequential inside': 'sequential',
                    'torch inside': 'torch', 'sequential after': 'auto',
                    'torch after': 'auto'}
    assert ops.requested_backend() == 'auto'


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
        assert status.fix
    if not statuses['cuda'].available:
        assert 'selective_scan_cuda' in statuses['cuda'].reason


@pytest.mark.slow
@pytest.mark.parametrize('variable', ['', 'garbage'])
def test_listing_command_prints_every_backend_even_on_a_bad_setting(
        variable):
    result = subprocess.run([sys.executable, '-m', 'mmvim.ops'],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ,
                                     MMVIM_OPS_BACKEND=variable))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''
    for name in ('cuda', 'triton', 'cpu', 'torch', 'sequential'):
        assert f'\n{name} ' in '\n' + result.stdout
    if variable:
        assert "requested: invalid: Unknown mmvim ops backend 'garbage'" in \
            result.stdout
    else:
        assert 'cpu tensors: ' in result.stdout


@contextlib.contextmanager
def portable_backend_as(name, wrap):
    """The portable backend's operators, each wrapped by ``wrap(op_name,
    operator)``, registered as backend ``name`` for the block."""
    portable = registry.load_backend('torch')[0]
    module = types.ModuleType(f'{name}_backend')
    for op in ('selective_scan', 'causal_conv1d_silu'):
        setattr(module, op, wrap(op, getattr(portable, op)))
    sys.modules[module.__name__] = module
    try:
        ops.register_backend(ops.Backend(name, module.__name__, 'test',
                                         fix='none'))
        yield
    finally:
        ops.unregister_backend(name)
        del sys.modules[module.__name__]
    assert name not in ops.backend_names()


def test_a_new_backend_runs_without_touching_the_mixer(tiny_vim):
    calls = []

    def counted(name, operator):
        def run(*args):
            calls.append(name)
            return operator(*args)
        return run

    model = tiny_vim(arch=dict(embed_dims=16, num_layers=2), img_size=32)
    with portable_backend_as('counting', counted), ops.use_backend('counting'):
        model(torch.zeros(1, 3, 32, 32))
    assert calls.count('selective_scan') == 2
    assert calls.count('causal_conv1d_silu') == 2  # both directions each


@pytest.mark.parametrize('grad', [False, True])
def test_operators_run_below_autograd_unless_a_gradient_is_taken(
        tiny_vim, grad):
    # Without a gradient the ops call the operators below the Autograd key
    # (their autograd kernel would only pass the call on); with one, through
    # it.
    below_autograd = []

    def recorded(name, operator):
        def run(*args):
            below_autograd.append(
                torch._C._dispatch_tls_is_dispatch_key_excluded(
                    torch._C.DispatchKey.AutogradFunctionality))
            return operator(*args)
        return run

    model = tiny_vim(arch=dict(embed_dims=16, num_layers=2), img_size=32)
    with portable_backend_as('recording', recorded), \
            ops.use_backend('recording'), torch.set_grad_enabled(grad):
        features = model(torch.zeros(1, 3, 32, 32))
    assert below_autograd == [not grad] * 4
    assert features[0].requires_grad == grad


@pytest.mark.slow
def test_import_survives_broken_accelerators(tmp_path):
    # Packages that raise on import, as the released wheels do without their
    # compiled extensions.
    for name in ('selective_scan_cuda', 'triton'):
        (tmp_path / name).mkdir()
        (tmp_path / name / '__init__.py').write_text(
            "raise OSError('undefined symbol: _ZN3c10')")
    code = ('import mmvim, torch; from mmvim.models import VisionMamba; '
            'm = VisionMamba(dict(embed_dims=16, num_layers=1)); '
            'm(torch.zeros(1, 3, 32, 32)); '
            'r = {s.name: s.reason for s in mmvim.ops.list_backends()}; '
            "print(r['cuda']); print(r['triton']); "
            "print(mmvim.ops.get_backend('cuda'))")
    result = subprocess.run([sys.executable, '-c', code],
                            env=dict(os.environ, PYTHONPATH=str(tmp_path),
                                     TRITON_INTERPRET='0'),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    cuda_reason, triton_reason, chosen = result.stdout.strip().splitlines()
    assert 'undefined symbol' in cuda_reason
    assert 'undefined symbol' in triton_reason
    assert chosen == 'torch'


def _copy_of_mmvim(tmp_path):
    """A copy of the mmvim package (with its built library) to damage."""
    source = Path(mmvim.__file__).resolve().parent
    shutil.copytree(source, tmp_path / 'mmvim',
                    ignore=shutil.ignore_patterns('__pycache__'))
    libraries = sorted((tmp_path / 'mmvim' / 'ops').glob('_cpu_ops*.so'))
    if not libraries:
        pytest.skip('the cpu backend is not built here (MMVIM_WITH_CPU_OPS=0)')
    return libraries[0]


# Each case starts a process (a second or more each): one in the quick set.
@pytest.mark.parametrize('damage', [
    'truncated',
    pytest.param('garbage', marks=pytest.mark.slow),
    pytest.param('record gone', marks=pytest.mark.slow)])
def test_a_damaged_cpu_library_is_unavailable_not_a_crash(tmp_path, damage):
    # Loading a truncated library kills the process with SIGBUS, garbage in
    # its code with SIGILL: the library is checked against its build record
    # before it is loaded.
    library = _copy_of_mmvim(tmp_path)
    if damage == 'truncated':
        with open(library, 'r+b') as file:
            file.truncate(100_000)
    elif damage == 'garbage':
        data = bytearray(library.read_bytes())
        data[len(data) // 2:len(data) // 2 + 4096] = os.urandom(4096)
        library.write_bytes(bytes(data))
    else:
        Path(f'{library}.json').unlink()
    code = ('import mmvim, torch; from mmvim.models import VisionMamba; '
            'm = VisionMamba(dict(embed_dims=16, num_layers=1)); '
            'm(torch.zeros(1, 3, 32, 32)); import runpy; '
            "runpy.run_module('mmvim.ops', run_name='__main__')")
    # From tmp_path: the working directory comes first on sys.path.
    result = subprocess.run([sys.executable, '-c', code], cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(tmp_path)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    cpu_line = next(line for line in result.stdout.splitlines()
                    if line.startswith('cpu '))
    expected = 'no build record' if damage == 'record gone' else 'damaged'
    assert 'unavailable' in cpu_line and expected in cpu_line, cpu_line
    assert 'cpu tensors: torch' in result.stdout


def test_a_library_for_another_cpu_is_refused_before_loading(
        tmp_path, monkeypatch):
    from mmvim.ops.backends import cpu
    record = cpu.build_record()
    monkeypatch.setattr(cpu, 'cpu_flags', lambda: {'sse2'})
    if record['isa'] and cpu.platform.machine() in ('x86_64', 'AMD64'):
        with pytest.raises(RuntimeError, match='this CPU lacks.*x86-64'):
            cpu.verified_library(record)


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


@pytest.mark.parametrize('layout', ['contiguous', 'channel-last'])
@pytest.mark.parametrize('backend', ['cpu', 'torch', 'sequential'])
def test_both_directions_convs_are_one_call_into_one_tensor(backend, layout):
    if registry.load_backend(backend)[1] is not None:
        pytest.skip(f'{backend} unavailable here')
    x = torch.randn(2, 9, 70) if layout == 'contiguous' else torch.randn(
        2, 70, 9).transpose(1, 2)
    x = x.requires_grad_()
    weight = torch.randn(18, 4, requires_grad=True)
    bias = torch.randn(18, requires_grad=True)
    with ops.use_backend(backend):
        both = ops.bidirectional_causal_conv1d_silu(x, weight, bias)
        apart = torch.cat([
            ops.causal_conv1d_silu(x, weight[:9], bias[:9]),
            ops.causal_conv1d_silu(x, weight[9:], bias[9:], reverse=True)
        ], dim=1)
    torch.testing.assert_close(both, apart)
    assert both.stride() == (apart.contiguous().stride() if layout ==
                             'contiguous' else (70 * 18, 1, 18))
    grad = torch.randn_like(both)
    for got, want in zip(torch.autograd.grad(both, (x, weight, bias), grad),
                         torch.autograd.grad(apart, (x, weight, bias), grad)):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match='2 \\* channels'):
        ops.bidirectional_causal_conv1d_silu(x, weight[:9], bias[:9])


@pytest.mark.parametrize('backend', ['cpu', 'torch', 'sequential'])
def test_conv_shape_errors_name_the_argument_on_every_backend(backend):
    if registry.load_backend(backend)[1] is not None:
        pytest.skip(f'{backend} unavailable here')
    with ops.use_backend(backend):
        with pytest.raises(ValueError, match='weight'):
            ops.causal_conv1d_silu(torch.zeros(1, 3, 5), torch.zeros(2, 4))
        with pytest.raises(ValueError, match='bias'):
            ops.causal_conv1d_silu(torch.zeros(1, 3, 5), torch.zeros(3, 4),
                                   torch.zeros(2))
        with pytest.raises(ValueError, match='none empty'):
            ops.causal_conv1d_silu(torch.zeros(1, 3, 0), torch.zeros(3, 4))
