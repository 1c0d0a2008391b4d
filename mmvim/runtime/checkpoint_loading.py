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
  :func:`~mmvim.models.utils.weights_fit.check_weights_fit` names them and
  stops (``import mmvim`` makes mmengine's own whole-model loads of a Vim
  model do the same: :mod:`mmvim.models.model_loading`).
"""
from collections import OrderedDict
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner import load_state_dict as load_module_state_dict

from mmvim.models.utils.mmengine_checkpoints import (
    FILE_SCHEMES,
    load_checkpoint_file,
    use_safe_mmengine_loaders,
)
from mmvim.models.utils.weights_fit import (
    check_weights_fit,
    model_weights,
    state_dict_of,
    unwrapped_model,
)

# What a saved HistoryBuffer becomes in mmvim's checkpoints.
PLAIN_HISTORY_KEYS = ('log_history', 'count_history', 'max_length')
# The loaders mmengine 0.10.7 registers, by prefix; each is replaced.
MMENGINE_SCHEMES = ('', 'http://', 'https://', 'pavi://',
                    r'(\S+\:)?s3://', r'(\S+\:)?petrel://', 'modelzoo://',
                    'torchvision://', 'open-mmlab://', 'openmmlab://',
                    'mmcls://')


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


def load_fitting_weights(model: torch.nn.Module, source: str,
                         prefix: Optional[str] = None) -> dict:
    """Loads the weights of ``source`` (those under ``prefix``, see
    :func:`model_weights`) into ``model`` if they fit exactly (see
    :func:`check_weights_fit`); returns the checkpoint."""
    checkpoint = load_checkpoint_file(source)
    check_weights_fit(model, checkpoint, source, prefix)
    load_module_state_dict(
        unwrapped_model(model),
        model_weights(state_dict_of(checkpoint), prefix),
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
