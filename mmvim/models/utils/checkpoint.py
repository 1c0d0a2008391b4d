"""Reading checkpoints without unpickling arbitrary objects.

:func:`safe_torch_load` is mmvim's one way into ``torch.load``: always
``weights_only=True`` (whatever the torch version defaults to and whatever
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says, since an explicit argument wins),
with an allow-list that holds only for that one call. The backbone reads
released Vim files through it; the tools' runtime (:mod:`mmvim.runtime`)
reads mmengine checkpoints through it with its own list.
"""
import argparse
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Union

import torch

# What the released Vim files hold besides tensors and plain containers:
# the training script's argparse.Namespace under 'args'.
RELEASED_VIM_GLOBALS = (argparse.Namespace, )


def safe_torch_load(source: str,
                    allowed_globals: Iterable = (),
                    map_location: Union[str, Callable, None] = 'cpu'):
    """``torch.load`` of a file or an http(s) URL with ``weights_only=True``.

    Args:
        source: a local path or an http(s) URL (downloaded into torch's hub
            cache).
        allowed_globals: classes or ``(stand-in, 'module.name')`` pairs the
            file may name besides tensors and plain containers, allowed for
            this call only.
        map_location: as for ``torch.load``.

    Raises:
        FileNotFoundError: no file at ``source``.
        ValueError: the file is not a checkpoint, is damaged, or names an
            object outside the allow-list (nothing of it is executed).
    """
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            if str(source).startswith(('http://', 'https://')):
                return torch.hub.load_state_dict_from_url(
                    str(source), map_location=map_location,
                    weights_only=True)
            return torch.load(
                source, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(
            f'{source} could not be read as a PyTorch checkpoint with '
            f'weights_only=True ({type(error).__name__}: {error}).') from error


def load_checkpoint_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The model weights stored in ``path`` (a file or an http(s) URL).

    Accepts a released Vim file (``{'model': state_dict, 'args': ...}``), an
    mmengine checkpoint (``{'state_dict': ...}``) or a bare state dict, and
    strips a DistributedDataParallel ``module.`` prefix. Loading is
    ``weights_only``: a file holding other objects is refused, not executed.
    """
    try:
        checkpoint = safe_torch_load(path, RELEASED_VIM_GLOBALS)
    except FileNotFoundError:
        raise FileNotFoundError(
            f'Checkpoint {path} does not exist. Download a released Vim '
            'checkpoint (see the README) or fix the path, e.g. with '
            '--cfg-options model.backbone.init_cfg.checkpoint=PATH.') from None
    except ValueError as error:
        raise ValueError(
            f'{error} Expected a released Vim .pth file, an mmengine '
            'checkpoint or a saved state dict.') from error.__cause__
    if isinstance(checkpoint, dict):
        for key in ('model', 'state_dict'):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(
            f'{path} holds no state dict (a mapping of names to tensors, '
            "possibly under 'model' or 'state_dict').")
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k,
                        v) for k, v in checkpoint.items())
