"""Checkpoints the tools read and write: weights only, and only if they fit.

Three promises, for everything the tools load (resume, ``load_from``,
tools/test.py, the demo):

* **Nothing in a file runs.** mmengine 0.10.7 calls ``torch.load`` without
  ``weights_only``, so on torch < 2.6 or with
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` a crafted file runs code.
  :func:`use_safe_checkpoint_loaders` replaces every loader of mmengine's
  ``CheckpointLoader`` with :func:`load_checkpoint_file`
  (``weights_only=True`` through :func:`mmvim.models.utils.safe_torch_load`).
* **Nothing in a file changes the process.** mmengine pickles the message
  hub's ``HistoryBuffer`` objects, and unpickling one updates the class-wide
  table of statistic methods from the file. mmvim's checkpoints hold plain
  data instead (:class:`CheckpointFormatHook`), readable by ``torch.load``'s
  defaults, hence by mmseg's ``init_model`` and mmdet's ``init_detector``.
  Older mmengine files are read through stand-ins that keep only the logged
  numbers (:data:`LEGACY_MMENGINE_GLOBALS`).
* **Weights that do not fit are an error.** mmengine only warns about
  missing keys and shape mismatches and goes on with random weights;
  :func:`check_weights_fit` names them and stops.
"""
import pickle
from collections import OrderedDict
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import CheckpointLoader
from mmengine.runner import load_state_dict as load_module_state_dict

from mmvim.models.utils import safe_torch_load

HISTORY_BUFFER = 'mmengine.logging.history_buffer.HistoryBuffer'
# numpy 1.x pickles these under numpy.core, numpy 2.x under numpy._core.
NUMPY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')
# The dtypes of numbers an mmengine log or metric can hold.
NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                'uint32', 'uint64', 'float16', 'float32', 'float64')
# What a saved HistoryBuffer becomes in mmvim's checkpoints.
PLAIN_HISTORY_KEYS = ('log_history', 'count_history', 'max_length')
# The loaders mmengine 0.10.7 registers, by prefix; each is replaced.
MMENGINE_SCHEMES = ('', 'http://', 'https://', 'pavi://',
                    r'(\S+\:)?s3://', r'(\S+\:)?petrel://', 'modelzoo://',
                    'torchvision://', 'open-mmlab://', 'openmmlab://',
                    'mmcls://')


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model they are loaded into."""


class _PickledHistoryBuffer:
    """Stands in for ``HistoryBuffer`` while unpickling an older mmengine
    checkpoint: keeps the logged numbers, ignores the statistic methods the
    real ``__setstate__`` would write into the class."""

    def __setstate__(self, state: dict) -> None:
        self.plain = dict(
            log_history=torch.as_tensor(np.asarray(state['_log_history'])),
            count_history=torch.as_tensor(
                np.asarray(state['_count_history'])),
            max_length=int(state['max_length']))


def _history_buffer_method(owner, name: str) -> str:
    """Stands in for ``builtins.getattr`` while unpickling: HistoryBuffer's
    pickle names its statistic methods as ``getattr(HistoryBuffer, name)``.
    Only those lookups are answered, and with the name, not the method."""
    if owner is not _PickledHistoryBuffer or name.startswith('_') or \
            not callable(getattr(HistoryBuffer, name, None)):
        raise pickle.UnpicklingError(
            f'refusing getattr({owner!r}, {name!r}) while loading a '
            'checkpoint: only HistoryBuffer statistic methods are allowed')
    return name


def _legacy_mmengine_globals() -> list:
    # The functions numpy pickles arrays and scalars with, asked from numpy
    # itself rather than from a module path that moved between versions.
    rebuild_array = np.zeros(0).__reduce__()[0]
    rebuild_scalar = np.float64(0).__reduce__()[0]
    return [
        (_PickledHistoryBuffer, HISTORY_BUFFER),
        (_history_buffer_method, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        *[type(np.dtype(name)) for name in NUMPY_DTYPES],
        *[(rebuild_array, f'{module}._reconstruct')
          for module in NUMPY_MODULES],
        *[(rebuild_scalar, f'{module}.scalar') for module in NUMPY_MODULES],
    ]


# What an mmengine checkpoint written before mmvim's format may name besides
# tensors and containers: its message hub's HistoryBuffers (as stand-ins)
# and their numpy arrays and scalars.
LEGACY_MMENGINE_GLOBALS = _legacy_mmengine_globals()


def _replace_stand_ins(node):
    if isinstance(node, _PickledHistoryBuffer):
        return node.plain
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _replace_stand_ins(value)
    elif isinstance(node, list):
        node[:] = [_replace_stand_ins(value) for value in node]
    return node


def load_checkpoint_file(source: str, map_location='cpu'):
    """Reads an mmengine or mmvim checkpoint (file or URL) with
    ``weights_only=True``; older mmengine HistoryBuffers come back as
    plain dicts, as in mmvim's own checkpoints.

    Raises:
        FileNotFoundError, ValueError: as :func:`safe_torch_load`.
    """
    checkpoint = safe_torch_load(source, LEGACY_MMENGINE_GLOBALS,
                                 map_location)
    return _replace_stand_ins(checkpoint)


def _mmengine_loader(filename: str, map_location=None):
    return load_checkpoint_file(filename, map_location)


def _refused_scheme(filename: str, map_location=None):
    raise ValueError(
        f'{filename}: mmvim\'s tools load checkpoints from local files and '
        'http(s) URLs only, so that every load is weights_only. Download '
        'the file and pass its path.')


def use_safe_checkpoint_loaders() -> None:
    """Routes every mmengine checkpoint load of this process (Runner
    resume and load_from, ``load_checkpoint``, hence mmseg's ``init_model``
    and mmdet's ``init_detector``) through :func:`load_checkpoint_file`.
    Schemes it cannot load that way (pavi, s3, model-zoo names) are refused
    with a message instead of reaching an unguarded ``torch.load``."""
    CheckpointLoader.register_scheme(
        prefixes=['', 'http://', 'https://'],
        loader=_mmengine_loader,
        force=True)
    CheckpointLoader.register_scheme(
        prefixes=[scheme for scheme in MMENGINE_SCHEMES
                  if scheme not in ('', 'http://', 'https://')],
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


def weight_mismatches(
        model: torch.nn.Module, state_dict: dict
) -> Tuple[List[str], List[str], List[str]]:
    """(missing keys, unexpected keys, shape mismatches) of loading
    ``state_dict`` (a ``module.`` prefix stripped) into ``model``; BatchNorm
    ``num_batches_tracked`` counters are not weights and do not count."""
    own = _unwrapped(model).state_dict()
    given = {
        key[len('module.'):] if key.startswith('module.') else key: value
        for key, value in state_dict.items()
    }

    def counted(keys: Iterator[str]) -> List[str]:
        return [key for key in keys if not key.endswith('num_batches_tracked')]

    missing = counted(key for key in own if key not in given)
    unexpected = counted(key for key in given if key not in own)
    mismatched = [
        f'{key} {tuple(given[key].shape)} vs {tuple(own[key].shape)}'
        for key in own if key in given and hasattr(given[key], 'shape')
        and tuple(given[key].shape) != tuple(own[key].shape)
    ]
    return missing, unexpected, mismatched


def check_weights_fit(model: torch.nn.Module, checkpoint,
                      source: Optional[str] = None) -> None:
    """Raises CheckpointMismatchError naming the keys unless the
    checkpoint's weights fit ``model`` exactly."""
    state_dict = checkpoint.get('state_dict', checkpoint) \
        if isinstance(checkpoint, dict) else None
    name = source or 'the checkpoint'
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(f'{name} holds no state_dict.')
    missing, unexpected, mismatched = weight_mismatches(model, state_dict)
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
        f'{name} does not fit this model (a checkpoint of another config, or '
        'of the backbone only?):\n  ' + '\n  '.join(problems) +
        '\nUse a checkpoint saved with this config; a backbone checkpoint '
        'goes in model.backbone.init_cfg=dict(type=\'Pretrained\', '
        'checkpoint=PATH).')


def load_fitting_weights(model: torch.nn.Module, source: str) -> dict:
    """Loads the weights of ``source`` into ``model`` if they fit exactly
    (see :func:`check_weights_fit`); returns the checkpoint."""
    checkpoint = load_checkpoint_file(source)
    check_weights_fit(model, checkpoint, source)
    state_dict = checkpoint.get('state_dict', checkpoint)
    load_module_state_dict(
        _unwrapped(model), {
            key[len('module.'):] if key.startswith('module.') else key: value
            for key, value in state_dict.items()
        },
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
