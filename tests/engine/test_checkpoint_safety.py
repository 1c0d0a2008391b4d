"""Resuming mmengine checkpoints with torch.load's weights_only safety on."""
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmvim.engine import allow_mmengine_checkpoints


class TinyRegressor(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='tensor'):
        prediction = self.linear(torch.stack(inputs)).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((prediction - torch.stack(targets))**2).mean())
        return prediction


class TinyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        inputs = torch.randn(2, generator=generator)
        return dict(inputs=inputs, targets=inputs.sum())


def tiny_runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=TinyRegressor(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=TinyData(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='LinearLR', by_epoch=False, end=2),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False)),
        randomness=dict(seed=0),
        **kwargs)


class SneakyLookup:
    """Pickles as getattr(HistoryBuffer, '__init__'): a lookup outside the
    statistic methods the allow-list is for."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_resume_with_weights_only_load(tmp_path):
    tiny_runner(tmp_path, max_iters=2).train()
    checkpoint = tmp_path / 'iter_2.pth'
    # what torch >= 2.6 refuses by default
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(checkpoint)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe

    allow_mmengine_checkpoints()
    loaded = torch.load(checkpoint)  # weights_only is the default
    assert loaded['meta']['iter'] == 2
    runner = tiny_runner(
        tmp_path, max_iters=4, resume=True, load_from=str(checkpoint))
    runner.train()
    assert runner.iter == 4
    # the message hub came back with its statistic methods
    lr_history = runner.message_hub.get_scalar('train/lr')
    assert len(lr_history.data[0]) == 4
    assert lr_history.mean() > 0


def test_other_objects_still_refused(tmp_path):
    allow_mmengine_checkpoints()
    for payload in ({'x': SneakyLookup()}, {'x': pickle.loads}):
        path = tmp_path / 'payload.pth'
        torch.save(payload, path)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path)
