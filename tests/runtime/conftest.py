"""A Runner small enough for unit tests: a two-weight regressor on eight
generated samples, with mmvim's checkpoint hooks."""
import itertools

import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmvim.runtime import CheckpointFormatHook, EarlierBestCheckpointsHook


class TinyRegressor(BaseModel):

    def __init__(self, width=2):
        super().__init__()
        self.linear = nn.Linear(width, 1)
        self.norm = nn.BatchNorm1d(1)

    def forward(self, inputs, targets, mode='tensor'):
        prediction = self.norm(self.linear(torch.stack(inputs))).squeeze(-1)
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


class ImprovingScore(BaseMetric):
    """'score' grows with the training iteration: every validation finds a
    new best."""

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        return dict(score=float(MessageHub.get_current_instance().get_info(
            'iter')))


RUNNER_NUMBERS = itertools.count()


@pytest.fixture
def tiny_regressor():
    return TinyRegressor


@pytest.fixture
def tiny_runner():
    """Builds a Runner of TinyRegressor saving every 2 iterations into
    ``work_dir``; ``validate=True`` adds a validation every 2 iterations
    whose score always improves, kept as best (``save_best='score'``)."""

    def build(work_dir, max_iters, model=None, with_mmvim_hook=True,
              validate=False, **kwargs):
        checkpoint = dict(type='CheckpointHook', interval=2, by_epoch=False)
        if validate:
            checkpoint.update(save_best='score', rule='greater')
            kwargs.update(
                val_dataloader=dict(
                    dataset=TinyData(),
                    sampler=dict(type='DefaultSampler', shuffle=False),
                    batch_size=4),
                val_cfg=dict(),
                val_evaluator=Evaluator([ImprovingScore()]))
        runner = Runner(
            # its own message hub even if another runner starts the same
            # second
            experiment_name=f'tiny_runner_{next(RUNNER_NUMBERS)}',
            model=model or TinyRegressor(),
            work_dir=str(work_dir),
            train_dataloader=dict(
                dataset=TinyData(),
                sampler=dict(type='DefaultSampler', shuffle=True),
                batch_size=2),
            optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
            param_scheduler=dict(type='LinearLR', by_epoch=False, end=2),
            train_cfg=dict(by_epoch=False, max_iters=max_iters,
                           val_interval=2),
            default_hooks=dict(checkpoint=checkpoint),
            randomness=dict(seed=0),
            **kwargs)
        if with_mmvim_hook:
            runner.register_hook(CheckpointFormatHook())
            runner.register_hook(EarlierBestCheckpointsHook())
        return runner

    return build
