"""Checkpoints the tools read and write: weights only, and only if they fit.

Three promises, for everything the tools load (resume, ``load_from``,
tools/test.py, the demo, the export):

* **Nothing in a file runs, nothing in a file changes the process.**
  ``import mmvim`` already makes mmengine's loaders of local files and
  http(s) URLs weights-only and able to read mmengine's own files
  (:mod:`mmvim.models.utils.mmengine_checkpoints`); the tools also refuse
  the schemes that cannot be made so (:func:`use_safe_checkpoint_loaders`).
* **Checkpoints are plain data.** mmengine pickles the message hub's
  ``HistoryBuffer`` objects; mmvim's checkpoints hold plain data instead
  (:class:`CheckpointFormatHook`), readable by ``torch.load``'s defaults,
  hence by mmseg's ``init_model`` and mmdet's ``init_detector`` even without
  ``import mmvim``.
* **Weights that do not fit are an error.** mmengine only warns about
  missing keys and shape mismatches and goes on with random weights;
  :func:`check_weights_fit` names them and stops.
"""
from collections import OrderedDict
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import CheckpointLoader
from mmengine.runner import load_state_dict as load_module_state_dict

from mmvim.models.utils.mmengine_checkpoints import (
    FILE_SCHEMES,
    load_checkpoint_file,
    use_safe_mmengine_loaders,
)

# What a saved HistoryBuffer becomes in mmvim's checkpoints.
PLAIN_HISTORY_KEYS = ('log_history', 'count_history', 'max_length')
# The loaders mmengine 0.10.7 registers, by prefix; each is replaced.
MMENGINE_SCHEMES = ('', 'http://', 'https://', 'pavi://',
                    r'(\S+\:)?s3://', r'(\S+\:)?petrel://', 'modelzoo://',
                    'torchvision://', 'open-mmlab://', 'openmmlab://',
                    'mmcls://')


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model they are loaded into."""


def _refused_scheme(filename: str, map_location=None):
    raise ValueError(
        f'{filename}: mmvim\'s tools load checkpoints from local files and '
        'http(s) URLs only, so that every load is weights_only. Download '
        'the file and pass its path.')


def use_safe_checkpoint_loaders() -> None:
    """Routes every mmengine checkpoint load of this process (Runner
    resume and load_from, ``load_checkpoint``, hence mmseg's ``init_model``
    and mmdet's ``init_detector``) through :func:`load_checkpoint_file`, as
    ``import mmvim`` does, and refuses, with a message, the schemes it
    cannot load that way (pavi, s3, model-zoo names) instead of letting
    them reach an unguarded ``torch.load``."""
    use_safe_mmengine_loaders()
    CheckpointLoader.register_scheme(
        prefixes=[scheme for scheme in MMENGINE_SCHEMES
                  if scheme not in FILE_SCHEMES],
        loader=_refused_scheme,
        force=True)


def _plain(node, where: str):
    """``node`` with numpy values turned into Python numbers or tensors;
    raises on anything ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(node, HistoryBuffer):
        log, count = node.data
        return dict(
            log_history=torch.from_numpy(np.array(log)),
            count_history=torch.from_numpy(np.array(count)),
            max_length=int(node.max_length))
    if isinstance(node, np.generic):
        return node.item()
    if isinstance(node, np.ndarray):
        return torch.from_numpy(node.copy())
    if isinstance(node, dict):
        # dict and OrderedDict in place: a state dict keeps its _metadata.
        plain = node if type(node) in (dict, OrderedDict) else dict(node)
        for key, value in node.items():
            plain[key] = _plain(value, f'{where}.{key}')
        return plain
    if isinstance(node, (list, tuple)):
        items = [_plain(value, f'{where}[{index}]')
                 for index, value in enumerate(node)]
        return items if isinstance(node, list) else tuple(items)
    if node is None or isinstance(node, (bool, int, float, complex, str,
                                         bytes, torch.Tensor, torch.dtype,
                                         torch.device, torch.Size)):
        return node
    raise TypeError(
        f'{where} is a {type(node).__module__}.{type(node).__qualname__}, '
        'which torch.load(weights_only=True) would refuse; checkpoints '
        'hold tensors, numbers, strings and containers only.')


def to_plain_checkpoint(checkpoint: dict) -> None:
    """Rewrites, in place, everything of an mmengine checkpoint but its
    tensors into plain data: HistoryBuffers become
    ``{'log_history', 'count_history', 'max_length'}``, numpy numbers
    Python numbers, numpy arrays tensors."""
    for key in list(checkpoint):
        checkpoint[key] = _plain(checkpoint[key], key)


def restore_message_hub(checkpoint: dict) -> None:
    """Turns the plain log histories of a loaded checkpoint back into
    HistoryBuffers, in place, for ``MessageHub.load_state_dict``."""
    scalars = (checkpoint.get('message_hub') or {}).get('log_scalars') or {}
    for name, value in scalars.items():
        if isinstance(value, dict) and set(value) == set(PLAIN_HISTORY_KEYS):
            scalars[name] = HistoryBuffer(
                value['log_history'].numpy(), value['count_history'].numpy(),
                value['max_length'])


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
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
    own = _unwrapped(model).state_dict()

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
    state_dict = checkpoint.get('state_dict', checkpoint) \
        if isinstance(checkpoint, dict) else None
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


def load_fitting_weights(model: torch.nn.Module, source: str,
                         prefix: Optional[str] = None) -> dict:
    """Loads the weights of ``source`` (those under ``prefix``, see
    :func:`model_weights`) into ``model`` if they fit exactly (see
    :func:`check_weights_fit`); returns the checkpoint."""
    checkpoint = load_checkpoint_file(source)
    check_weights_fit(model, checkpoint, source, prefix)
    load_module_state_dict(
        _unwrapped(model),
        model_weights(checkpoint.get('state_dict', checkpoint), prefix),
        strict=True)
    return checkpoint


class CheckpointFormatHook(Hook):
    """Writes checkpoints as plain data and checks what is loaded.

    ``before_save_checkpoint``: :func:`to_plain_checkpoint`, so the file
    needs no allow-list to load. ``after_load_checkpoint`` (resume and
    ``load_from``): :func:`check_weights_fit`, then
    :func:`restore_message_hub` for the Runner's message hub.
    """
    # After other hooks: EMAHook, say, adds to what is saved and swaps the
    # averaged weights in when a checkpoint is loaded for testing.
    priority = 'LOWEST'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        to_plain_checkpoint(checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        check_weights_fit(runner.model, checkpoint,
                          runner.cfg.get('load_from'))
        restore_message_hub(checkpoint)
