"""Lets torch >= 2.6's safe ``torch.load`` read checkpoints saved by mmengine.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``, which
refuses any class it does not know. mmengine 0.10.7 calls ``torch.load``
without that argument, and its checkpoints hold more than tensors: the
message hub's ``HistoryBuffer`` objects with their numpy log arrays, numpy
scalars, and the buffer's statistic methods, which pickle stores as
``getattr(HistoryBuffer, 'mean')``. Instead of switching the safety off, this
module allow-lists exactly those objects; anything else still fails to load.
"""
import inspect
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# numpy 1.x pickles these under numpy.core, numpy 2.x under numpy._core.
NUMPY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')
# The dtypes of numbers an mmengine log or metric can hold.
NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                'uint32', 'uint64', 'float16', 'float32', 'float64')


def _history_buffer_method(owner, name: str):
    """Stands in for ``builtins.getattr`` while unpickling.

    A real ``getattr`` would let a crafted file reach any attribute of any
    allowed object; only the lookups HistoryBuffer's pickling produces, the
    public functions of the HistoryBuffer class, are honoured.
    """
    method = getattr(owner, name, None) if owner is HistoryBuffer else None
    if name.startswith('_') or not inspect.isfunction(method):
        raise pickle.UnpicklingError(
            f'refusing getattr({owner!r}, {name!r}) while loading a '
            'checkpoint: only HistoryBuffer statistic methods are allowed')
    return method


def allow_mmengine_checkpoints() -> None:
    """Allow-lists the classes mmengine training checkpoints contain.

    Call it once before resuming or testing (the tools do). Repeated calls
    are harmless: torch keeps the allow-list as a set.
    """
    # The functions numpy pickles arrays and scalars with, asked from numpy
    # itself rather than from a module path that moved between versions.
    rebuild_array = np.zeros(0).__reduce__()[0]
    rebuild_scalar = np.float64(0).__reduce__()[0]
    dtype_classes = [type(np.dtype(name)) for name in NUMPY_DTYPES]
    torch.serialization.add_safe_globals([
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        *dtype_classes,
        *[(rebuild_array, f'{module}._reconstruct')
          for module in NUMPY_MODULES],
        *[(rebuild_scalar, f'{module}.scalar') for module in NUMPY_MODULES],
        (_history_buffer_method, 'builtins.getattr'),
    ])
