"""mmengine's checkpoint loading, weights-only and able to read mmengine's
own files, from ``import mmvim`` on.

mmengine 0.10.7 loads every checkpoint (Runner resume and ``load_from``,
``load_checkpoint``, hence mmseg's ``init_model`` and mmdet's
``init_detector``) through its ``CheckpointLoader`` registry, whose loaders
call ``torch.load`` without ``weights_only``. With torch >= 2.6 that fails on
mmengine's own checkpoints (``Unsupported global: HistoryBuffer``), and with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (or an older torch) a crafted file
runs code. :func:`use_safe_mmengine_loaders`, called by ``import mmvim``,
registers :func:`load_checkpoint_file` for local files and http(s) URLs:

* **Nothing in a file runs**: ``weights_only=True`` through
  :func:`~mmvim.models.utils.safe_torch_load`, whatever the environment says.
* **Nothing in a file changes the process**: the message hub's pickled
  ``HistoryBuffer`` objects would update the class-wide table of statistic
  methods from the file; they are read through stand-ins that keep only the
  logged numbers (:data:`LEGACY_MMENGINE_GLOBALS`) and come back as plain
  dicts, the form mmvim's tools write.

The model-zoo and remote-store schemes (``open-mmlab://``, ``torchvision://``,
``s3://``, ...) stay mmengine's: mmvim's tools refuse them
(:func:`mmvim.runtime.use_safe_checkpoint_loaders`).
"""
import os.path as osp
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

from .checkpoint import safe_torch_load

HISTORY_BUFFER = 'mmengine.logging.history_buffer.HistoryBuffer'
# numpy 1.x pickles these under numpy.core, numpy 2.x under numpy._core.
NUMPY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')
# The dtypes of numbers an mmengine log or metric can hold.
NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                'uint32', 'uint64', 'float16', 'float32', 'float64')
# The prefixes whose mmengine loaders are replaced on import.
FILE_SCHEMES = ('', 'http://', 'https://')


class _PickledHistoryBuffer:
    """Stands in for ``HistoryBuffer`` while unpickling an mmengine
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


# What an mmengine checkpoint may name besides tensors and containers: its
# message hub's HistoryBuffers (as stand-ins) and their numpy arrays and
# scalars.
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


def load_checkpoint_file(source: str, map_location='cpu', mmap=False):
    """Reads an mmengine or mmvim checkpoint (file or URL) with
    ``weights_only=True``; mmengine's HistoryBuffers come back as plain
    dicts, as in mmvim's own checkpoints. ``mmap``: as for
    :func:`safe_torch_load`.

    Raises:
        FileNotFoundError, UnreadableCheckpointError: as
            :func:`safe_torch_load`.
    """
    if not str(source).startswith(('http://', 'https://')):
        source = osp.expanduser(source)
    checkpoint = safe_torch_load(source, LEGACY_MMENGINE_GLOBALS,
                                 map_location, mmap)
    return _replace_stand_ins(checkpoint)


def _mmengine_loader(filename: str, map_location=None):
    return load_checkpoint_file(filename, map_location)


def use_safe_mmengine_loaders() -> None:
    """Registers :func:`load_checkpoint_file` as mmengine's loader of local
    files and http(s) URLs (``import mmvim`` does, once)."""
    CheckpointLoader.register_scheme(
        prefixes=list(FILE_SCHEMES), loader=_mmengine_loader, force=True)
