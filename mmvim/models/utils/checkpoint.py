"""Reading released Vim checkpoints without unpickling arbitrary objects."""
import argparse
from collections import OrderedDict
from typing import Dict

import torch

# What the released Vim files hold besides tensors and plain containers:
# the training script's argparse.Namespace under 'args'.
SAFE_CHECKPOINT_GLOBALS = [argparse.Namespace]


def load_checkpoint_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The model weights stored in ``path`` (a file or an http(s) URL).

    Accepts a released Vim file (``{'model': state_dict, 'args': ...}``), an
    mmengine checkpoint (``{'state_dict': ...}``) or a bare state dict, and
    strips a DistributedDataParallel ``module.`` prefix. Loading is
    ``weights_only``: a file holding other objects is refused, not executed.
    """
    try:
        with torch.serialization.safe_globals(SAFE_CHECKPOINT_GLOBALS):
            if str(path).startswith(('http://', 'https://')):
                checkpoint = torch.hub.load_state_dict_from_url(
                    path, map_location='cpu', weights_only=True)
            else:
                checkpoint = torch.load(path, map_location='cpu',
                                        weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(
            f'Checkpoint {path} does not exist. Download a released Vim '
            'checkpoint (see the README) or fix the path, e.g. with '
            '--cfg-options model.backbone.init_cfg.checkpoint=PATH.') from None
    except Exception as error:
        raise ValueError(
            f'{path} could not be read as a PyTorch checkpoint with '
            f'weights_only=True ({type(error).__name__}: {error}). Expected '
            'a released Vim .pth file, an mmengine checkpoint or a saved '
            'state dict.') from error
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
