"""Whether a checkpoint's weights fit a model, and which keys do not.

mmengine's loads with ``strict=False`` only warn about missing keys and
shapes that differ, then run with random weights where they were. The
tools (:mod:`mmvim.runtime.checkpoint_loading`) and, after ``import mmvim``,
mmengine's whole-model loads of a Vim model (:mod:`mmvim.models.model_loading`)
call :func:`check_weights_fit` first and stop with the keys named.
"""
from typing import Iterator, List, Optional, Tuple

import torch
from mmengine.model import BaseTTAModel, is_model_wrapper


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model they are loaded into."""


def unwrapped_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP-style wrappers and test-time augmentation."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def _listed(keys: List[str], limit: int = 8) -> str:
    """All keys if few, else their counts per top-level module with the
    first of each (``decode_head.* (40 keys: decode_head.bottleneck...)``).
    """
    keys = sorted(keys)
    if len(keys) <= limit:
        return ', '.join(keys)
    groups: dict = {}
    for key in keys:
        groups.setdefault(key.split('.')[0], []).append(key)
    return ', '.join(f'{prefix}.* ({len(members)} keys: {members[0]}, ...)'
                     for prefix, members in groups.items())


def state_dict_of(checkpoint) -> Optional[dict]:
    """A checkpoint's weights: its ``state_dict``, or the file itself when
    it is a bare state dict; None when it is not a dict at all."""
    if not isinstance(checkpoint, dict):
        return None
    return checkpoint.get('state_dict', checkpoint)


def model_weights(state_dict: dict, prefix: Optional[str] = None) -> dict:
    """The weights of a checkpoint's ``state_dict`` as the model names them:
    without DistributedDataParallel's ``module.`` prefix and, with
    ``prefix`` (e.g. ``'backbone.'``), only the keys under it, without it
    (or all keys when none is under it: a file of that module alone)."""
    weights = {
        key[len('module.'):] if key.startswith('module.') else key: value
        for key, value in state_dict.items()
    }
    if not prefix:
        return weights
    under = {key[len(prefix):]: value for key, value in weights.items()
             if key.startswith(prefix)}
    return under or weights


def weight_mismatches(
        model: torch.nn.Module, weights: dict
) -> Tuple[List[str], List[str], List[str]]:
    """(missing keys, unexpected keys, shape mismatches) of loading
    ``weights`` (see :func:`model_weights`) into ``model``; BatchNorm
    ``num_batches_tracked`` counters are not weights and do not count."""
    own = unwrapped_model(model).state_dict()

    def counted(keys: Iterator[str]) -> List[str]:
        return [key for key in keys if not key.endswith('num_batches_tracked')]

    missing = counted(key for key in own if key not in weights)
    unexpected = counted(key for key in weights if key not in own)
    mismatched = [
        f'{key} {tuple(weights[key].shape)} vs {tuple(own[key].shape)}'
        for key in own if key in weights and hasattr(weights[key], 'shape')
        and tuple(weights[key].shape) != tuple(own[key].shape)
    ]
    return missing, unexpected, mismatched


def check_weights_fit(model: torch.nn.Module, checkpoint,
                      source: Optional[str] = None,
                      prefix: Optional[str] = None) -> None:
    """Raises CheckpointMismatchError naming the keys (two lines: what
    differs, and the fix) unless the checkpoint's weights (those under
    ``prefix``, see :func:`model_weights`) fit ``model`` exactly."""
    state_dict = state_dict_of(checkpoint)
    name = source or 'the checkpoint'
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(f'{name} holds no state_dict.')
    missing, unexpected, mismatched = weight_mismatches(
        model, model_weights(state_dict, prefix))
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if mismatched:
        problems.append(f'{len(mismatched)} shapes differ (checkpoint vs '
                        f'model): {_listed(mismatched)}')
    if missing:
        problems.append(f'{len(missing)} weights missing: {_listed(missing)}')
    if unexpected:
        problems.append(f'{len(unexpected)} weights the model does not have: '
                        f'{_listed(unexpected)}')
    raise CheckpointMismatchError(
        f'{name} does not fit this model: ' + '; '.join(problems) +
        '.\nUse a checkpoint saved with this config (a backbone checkpoint '
        'goes in model.backbone.init_cfg=dict(type=\'Pretrained\', '
        'checkpoint=PATH)).')
