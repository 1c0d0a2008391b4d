"""Shared pieces of the tool tests: a tiny toy ADE20K, the tiny config, and
two ways to run a tool: its main() in this process (fast), or a fresh
process from the repository root, as a user does."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_script(relative_path):
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(
        f'_tool_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def tiny_ade20k_root(tmp_path_factory):
    """8 training and 2 validation pictures of 32x32 in the ADE20K layout."""
    make_toy_ade20k = _load_script(
        'tools/dataset_converters/make_toy_ade20k.py').make_toy_ade20k
    root = tmp_path_factory.mktemp('tiny_ade20k')
    return make_toy_ade20k(root, num_train=8, num_val=2, size=(32, 32))


@pytest.fixture
def tiny_config(tiny_ade20k_root, monkeypatch):
    """The tiny UperNet + Vim config, its data generated and found."""
    monkeypatch.setenv('TINY_ADE20K_ROOT', str(tiny_ade20k_root))
    return REPO / 'tests/data/configs/tiny_upernet_vim.py'


@pytest.fixture
def random_checkpoint(tiny_config, tmp_path):
    """Saves the tiny config's untrained model as the Runner does (weights
    and class names); returns the path. ``edit(state_dict)`` may change the
    weights first."""

    def save(name='random.pth', edit=None):
        import torch
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmseg.datasets import ADE20KDataset
        from mmseg.registry import MODELS

        import mmvim  # noqa: F401  registers VisionMamba
        init_default_scope('mmseg')
        model = MODELS.build(Config.fromfile(tiny_config).model)
        state_dict = model.state_dict()
        if edit is not None:
            edit(state_dict)
        path = tmp_path / name
        torch.save(
            dict(state_dict=state_dict,
                 meta=dict(dataset_meta=ADE20KDataset.METAINFO)), path)
        return path

    return save


@pytest.fixture
def tool_module():
    """Loads a script under tools/ as a module (they are not a package)."""
    return _load_script


@pytest.fixture
def tool_main(monkeypatch):
    """Calls main() of a script under tools/ with the given arguments (and
    ``MMVIM_DEBUG`` unset, as ``--debug`` sets it for the process)."""

    def run(script, *args):
        monkeypatch.setattr(sys, 'argv', [script, *map(str, args)])
        monkeypatch.delenv('MMVIM_DEBUG', raising=False)
        return _load_script(script).main()

    return run


@pytest.fixture
def run_tool():
    """Runs ``python ARGS`` (``bash ARGS`` for a .sh) in a new process from
    the repository root, with the repository importable; keyword arguments
    become environment variables."""

    def run(args, timeout=300, **env):
        environment = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                [str(REPO), os.environ.get('PYTHONPATH', '')]),
            PYTHON=sys.executable,
            OMP_NUM_THREADS='1')
        environment.pop('MMVIM_DEBUG', None)
        environment.update({key: str(value) for key, value in env.items()})
        args = [str(arg) for arg in args]
        command = ['bash', *args] if args[0].endswith('.sh') else [
            sys.executable, *args
        ]
        return subprocess.run(
            command,
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout)

    return run


@pytest.fixture
def toy(request):
    """The toy data generator the test module names in ``TOY_GENERATOR``
    (a script under tools/dataset_converters/), as a module."""
    return _load_script(request.module.TOY_GENERATOR)


@pytest.fixture(scope='module')
def quickstart_cfg(request):
    """The quickstart config the test module names in ``QUICKSTART``, read
    once per module: resolving its `mmseg::` / `mmdet::` bases takes
    seconds."""
    from mmvim.runtime import load_config
    return load_config(str(REPO / request.module.QUICKSTART))


@pytest.fixture
def short_run():
    """Builds the Runner of a copy of ``cfg`` trained for ``max_iters`` on
    the toy data at ``data_root`` (batch 2; validation, a checkpoint and a
    log line every 2, 2 and 1 iterations; a 2-iteration warm-up), writing
    to ``work_dir``. ``options`` (dotted config keys) come on top."""

    def build(cfg, data_root, work_dir, name, max_iters, **options):
        import copy

        from mmvim.runtime import build_runner
        merged = {
            f'{loader}.dataset.data_root': data_root
            for loader in ('train_dataloader', 'val_dataloader',
                           'test_dataloader')
        }
        merged.update({
            'train_dataloader.batch_size': 2,
            'train_cfg.max_iters': max_iters,
            'train_cfg.val_interval': 2,
            'default_hooks.checkpoint.interval': 2,
            'default_hooks.logger.interval': 1,
            # Runners of one process need their own logger/message hub
            # names.
            'experiment_name': f'{name}_{work_dir.parent.name}',
        })
        merged.update(options)
        cfg = copy.deepcopy(cfg)
        cfg.merge_from_dict(merged)
        cfg.work_dir = str(work_dir)
        cfg.param_scheduler = [
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                 end=2)
        ]
        return build_runner(cfg)

    return build
