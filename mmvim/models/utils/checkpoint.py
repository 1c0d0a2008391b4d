"""Reading checkpoints without unpickling arbitrary objects.

:func:`safe_torch_load` is mmvim's one way into ``torch.load``: always
``weights_only=True`` (whatever the torch version defaults to and whatever
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says, since an explicit argument wins),
with an allow-list that holds only for that one call. The backbone reads
released Vim files through it; the tools' runtime (:mod:`mmvim.runtime`)
reads mmengine checkpoints through it with its own list.
"""
import argparse
import zipfile
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Union

import torch

# What the released Vim files hold besides tensors and plain containers:
# the training script's argparse.Namespace under 'args'.
RELEASED_VIM_GLOBALS = (argparse.Namespace, )


class UnreadableCheckpointError(ValueError):
    """A file that is not a checkpoint ``torch.load(weights_only=True)``
    reads: damaged, truncated, not a checkpoint, or naming objects outside
    the allow-list."""


def safe_torch_load(source: str,
                    allowed_globals: Iterable = (),
                    map_location: Union[str, Callable, None] = 'cpu',
                    mmap: bool = False):
    """``torch.load`` of a file or an http(s) URL with ``weights_only=True``.

    Args:
        source: a local path or an http(s) URL (downloaded into torch's hub
            cache).
        allowed_globals: classes or ``(stand-in, 'module.name')`` pairs the
            file may name besides tensors and plain containers, allowed for
            this call only.
        map_location: as for ``torch.load``.
        mmap: map a local file's tensors instead of reading them (cheap: for
            reading a checkpoint's structure and meta); files of torch's
            legacy format are read whole.

    Raises:
        FileNotFoundError: no file at ``source``.
        UnreadableCheckpointError: the file is not a checkpoint, is damaged,
            or names an object outside the allow-list (nothing of it is
            executed).
    """
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            if str(source).startswith(('http://', 'https://')):
                return torch.hub.load_state_dict_from_url(
                    str(source), map_location=map_location,
                    weights_only=True)
            if mmap and zipfile.is_zipfile(source):
                return torch.load(
                    source, map_location=map_location, weights_only=True,
                    mmap=True)
            return torch.load(
                source, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise UnreadableCheckpointError(
            f'{source} could not be read as a PyTorch checkpoint with '
            f'weights_only=True ({type(error).__name__}: '
            f'{_reason(error)}).') from error


def _reason(error: Exception) -> str:
    """The line of a loading error that says what is wrong (torch's
    weights-only refusal puts it after several lines of advice)."""
    text = str(error)
    if _UNPICKLER_REASON in text:
        text = text.split(_UNPICKLER_REASON, 1)[1].split('. Please use')[0]
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ''


# Where torch's weights-only refusal names the object it refused.
_UNPICKLER_REASON = 'WeightsUnpickler error: '


def _without_module_prefix(name: str) -> str:
    """A key of DistributedDataParallel's state dict (``module.``) or of
    its ``_metadata`` (``module``) as the bare model names it."""
    if name == 'module':
        return ''
    return name[len('module.'):] if name.startswith('module.') else name


def load_checkpoint_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The model weights stored in ``path`` (a file or an http(s) URL).

    Accepts a released Vim file (``{'model': state_dict, 'args': ...}``), an
    mmengine checkpoint (``{'state_dict': ...}``) or a bare state dict, and
    strips a DistributedDataParallel ``module.`` prefix. Loading is
    ``weights_only``: a file holding other objects is refused, not executed.

    The result keeps the state dict's ``_metadata`` (what each module said
    about its weights, e.g. VisionMamba's patch grid); a released file's
    training input size (``args.input_size``) is added to the root
    module's entry as ``img_size``.
    """
    try:
        checkpoint = safe_torch_load(path, RELEASED_VIM_GLOBALS)
    except FileNotFoundError:
        raise FileNotFoundError(
            f'Checkpoint {path} does not exist. Download a released Vim '
            'checkpoint (see the README) or fix the path, e.g. with '
            '--cfg-options model.backbone.init_cfg.checkpoint=PATH.') from None
    except ValueError as error:
        raise UnreadableCheckpointError(
            f'{error} Expected a released Vim .pth file, an mmengine '
            'checkpoint or a saved state dict.') from error.__cause__
    input_size = None
    if isinstance(checkpoint, dict):
        input_size = getattr(checkpoint.get('args'), 'input_size', None)
        for key in ('model', 'state_dict'):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(
            f'{path} holds no state dict (a mapping of names to tensors, '
            "possibly under 'model' or 'state_dict').")
    state_dict = OrderedDict(
        (_without_module_prefix(k), v) for k, v in checkpoint.items())
    state_dict._metadata = OrderedDict(
        (_without_module_prefix(name), dict(entry)) for name, entry in (
            getattr(checkpoint, '_metadata', None) or {}).items())
    if isinstance(input_size, int) or (isinstance(input_size, (list, tuple))
                                       and len(input_size) == 2):
        state_dict._metadata.setdefault('', {})['img_size'] = input_size
    return state_dict
