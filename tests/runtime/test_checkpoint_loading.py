"""What the tools load: weights only, plain data, weights that fit."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import _load_checkpoint

from mmvim.runtime import (
    CheckpointMismatchError,
    check_weights_fit,
    load_checkpoint_file,
    prepare_process,
)
from mmvim.models.utils.mmengine_checkpoints import FILE_SCHEMES
from mmvim.runtime.checkpoint_loading import MMENGINE_SCHEMES


@pytest.fixture(autouse=True)
def safe_process():
    prepare_process()


class ShellCommand:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_checkpoints_are_plain_data_and_resume(tmp_path, tiny_runner):
    tiny_runner(tmp_path, max_iters=2).train()
    checkpoint = tmp_path / 'iter_2.pth'
    # torch's own defaults read it: no allow-list, nothing but data
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        checkpoint) == []
    loaded = torch.load(checkpoint, weights_only=True)
    assert loaded['meta']['iter'] == 2
    assert len(loaded['message_hub']['log_scalars']['train/lr']
               ['log_history']) == 2

    runner = tiny_runner(
        tmp_path, max_iters=4, resume=True, load_from=str(checkpoint))
    runner.train()
    assert runner.iter == 4
    # the message hub came back as HistoryBuffers with their statistics
    lr_history = runner.message_hub.get_scalar('train/lr')
    assert isinstance(lr_history, HistoryBuffer)
    assert len(lr_history.data[0]) == 4
    assert lr_history.mean() > 0


def test_older_mmengine_checkpoints_load_without_touching_the_class(
        tmp_path, monkeypatch, tiny_runner):
    tiny_runner(tmp_path, max_iters=2, with_mmvim_hook=False).train()
    legacy = torch.load(tmp_path / 'iter_2.pth', weights_only=False)
    buffer = legacy['message_hub']['log_scalars']['train/lr']
    assert isinstance(buffer, HistoryBuffer)  # mmengine's own format
    # the same file, crafted so that unpickling it with mmengine's
    # __setstate__ would make every HistoryBuffer's 'mean' return the max
    with monkeypatch.context() as patch:
        patch.setattr(
            HistoryBuffer, '__getstate__', lambda self: dict(
                self.__dict__, statistics_methods={'mean': HistoryBuffer.max}))
        crafted = tmp_path / 'crafted.pth'
        torch.save(legacy, crafted)
    methods_before = dict(HistoryBuffer._statistics_methods)

    loaded = load_checkpoint_file(str(crafted))
    assert HistoryBuffer._statistics_methods == methods_before
    plain = loaded['message_hub']['log_scalars']['train/lr']
    np.testing.assert_array_equal(plain['log_history'].numpy(),
                                  buffer._log_history)

    runner = tiny_runner(tmp_path, max_iters=4, resume=True,
                         load_from=str(crafted))
    runner.train()
    assert HistoryBuffer._statistics_methods == methods_before
    assert len(runner.message_hub.get_scalar('train/lr').data[0]) == 4


@pytest.mark.parametrize('force_unsafe', [False, True])
def test_code_in_a_checkpoint_never_runs(tmp_path, monkeypatch,
                                         force_unsafe):
    if force_unsafe:
        # makes torch.load default to weights_only=False
        monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'ran'
    path = tmp_path / 'payload.pth'
    torch.save({'state_dict': {}, 'meta': ShellCommand(marker)}, path)
    sneaky = tmp_path / 'sneaky.pth'
    torch.save({'x': pickle.loads}, sneaky)
    for candidate in (path, sneaky):
        # the way the Runner, mmseg's init_model and mmdet's init_detector
        # load, once the tools have set up the process
        with pytest.raises(ValueError, match='weights_only'):
            _load_checkpoint(str(candidate), map_location='cpu')
    assert not marker.exists()


def test_every_mmengine_scheme_is_replaced():
    assert set(CheckpointLoader._schemes) == set(MMENGINE_SCHEMES)
    for scheme, loader in CheckpointLoader._schemes.items():
        # files and URLs: made weights-only by import mmvim; the rest: the
        # tools' refusal
        assert loader.__module__ == (
            'mmvim.models.utils.mmengine_checkpoints' if scheme in
            FILE_SCHEMES else 'mmvim.runtime.checkpoint_loading')
    with pytest.raises(ValueError, match='local files and http'):
        _load_checkpoint('open-mmlab://resnet50_v1c')


def test_weights_that_do_not_fit_name_the_keys(tiny_regressor):
    model = tiny_regressor(width=2)
    check_weights_fit(model, {'state_dict': tiny_regressor(2).state_dict()})
    state = {f'module.{key}': value
             for key, value in tiny_regressor(2).state_dict().items()
             if 'num_batches_tracked' not in key}
    check_weights_fit(model, state)  # DDP prefix, BN counter: fine

    with pytest.raises(CheckpointMismatchError) as error:
        check_weights_fit(model, tiny_regressor(width=3).state_dict(), 'w3')
    assert 'linear.weight (1, 3) vs (1, 2)' in str(error.value)
    backbone_only = {'linear.weight': torch.zeros(1, 2),
                     'head.weight': torch.zeros(1)}
    with pytest.raises(CheckpointMismatchError) as error:
        check_weights_fit(model, backbone_only)
    message = str(error.value)
    assert 'linear.bias' in message and 'norm.weight' in message
    assert 'head.weight' in message


def test_load_from_that_does_not_fit_stops_the_runner(tmp_path, tiny_runner,
                                                      tiny_regressor):
    wide = tmp_path / 'wide.pth'
    torch.save({'state_dict': tiny_regressor(width=3).state_dict()}, wide)
    runner = tiny_runner(tmp_path, max_iters=2, load_from=str(wide))
    with pytest.raises(CheckpointMismatchError, match='linear.weight'):
        runner.train()
    assert not (tmp_path / 'iter_2.pth').exists()


def test_every_torch_load_in_mmvim_and_tools_is_weights_only():
    """A static check: each torch.load / torch.hub.load_state_dict_from_url
    call in mmvim/ and tools/ passes weights_only=True."""
    import ast
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    loaders = ('torch.load', 'torch.hub.load_state_dict_from_url')
    unsafe = []
    for path in [*repo.glob('mmvim/**/*.py'), *repo.glob('tools/**/*.py')]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and \
                    ast.unparse(node.func) in loaders:
                safe = any(
                    keyword.arg == 'weights_only'
                    and isinstance(keyword.value, ast.Constant)
                    and keyword.value.value is True
                    for keyword in node.keywords)
                if not safe:
                    unsafe.append(f'{path.relative_to(repo)}:{node.lineno}')
    assert not unsafe, unsafe
