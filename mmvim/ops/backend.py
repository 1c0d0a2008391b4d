"""The one place that decides which implementation of the Mamba ops runs.

Two backends exist: ``cuda`` (the compiled kernels of ``mamba-ssm`` and
``causal-conv1d``) and ``torch`` (mmvim's portable PyTorch ops). The choice is
``auto`` by default: kernels for CUDA tensors when both packages import, the
portable ops otherwise. Users force a backend with the environment variable
``MMVIM_OPS_BACKEND=auto|cuda|torch`` or :func:`set_backend`; forcing ``cuda``
where the kernels cannot run raises instead of silently falling back.
"""
import functools
import os
from types import SimpleNamespace
from typing import Optional

import torch

BACKEND_ENV = 'MMVIM_OPS_BACKEND'
BACKEND_CHOICES = ('auto', 'cuda', 'torch')

_forced_backend: Optional[str] = None


def _check_choice(name: str) -> str:
    if name not in BACKEND_CHOICES:
        raise ValueError(f'Unknown mmvim ops backend {name!r}: choose one of '
                         f'{BACKEND_CHOICES} (argument or ${BACKEND_ENV}).')
    return name


def set_backend(name: Optional[str]) -> None:
    """Force a backend for this process; ``None`` goes back to the
    environment variable (or ``auto``)."""
    global _forced_backend
    _forced_backend = None if name is None else _check_choice(name)


def requested_backend() -> str:
    """The backend asked for: :func:`set_backend`, else ``$MMVIM_OPS_BACKEND``,
    else ``auto``."""
    if _forced_backend is not None:
        return _forced_backend
    return _check_choice(os.environ.get(BACKEND_ENV, 'auto').strip().lower())


@functools.lru_cache(maxsize=None)
def load_cuda_kernels():
    """Import the compiled kernels once.

    Returns ``(kernels, None)`` or ``(None, reason)``. Any failure counts as
    absent: the released wheels raise ImportError, OSError or RuntimeError
    when their extensions do not match the installed torch or CUDA.
    """
    try:
        from causal_conv1d import causal_conv1d_fn
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as error:  # noqa: BLE001 - a broken install is 'absent'
        return None, f'{type(error).__name__}: {error}'
    return SimpleNamespace(
        selective_scan_fn=selective_scan_fn,
        causal_conv1d_fn=causal_conv1d_fn), None


def backend_for(device) -> str:
    """The backend that runs for tensors on ``device`` ('cuda' or 'torch').

    Raises RuntimeError when ``cuda`` is forced but cannot run there.
    """
    device = torch.device(device)
    requested = requested_backend()
    if requested == 'torch':
        return 'torch'
    kernels, reason = load_cuda_kernels()
    if requested == 'cuda':
        if device.type != 'cuda':
            raise RuntimeError(
                f'The cuda ops backend was forced but the tensors are on '
                f'{device}; move the model to a GPU or set '
                f'{BACKEND_ENV}=auto (or torch).')
        if kernels is None:
            raise RuntimeError(
                'The cuda ops backend was forced but mamba-ssm / '
                f'causal-conv1d cannot be imported ({reason}). Install them '
                '(pip install -r requirements/cuda.txt --no-build-isolation) '
                f'or set {BACKEND_ENV}=auto (or torch).')
        return 'cuda'
    return 'cuda' if device.type == 'cuda' and kernels is not None else 'torch'


def get_backend(device=None) -> str:
    """Which backend runs for tensors on ``device`` (default: the GPU when
    there is one, else the CPU)."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return backend_for(device)
