"""The one place that decides which implementation of the Mamba ops runs.

A backend is a module implementing the three ops the Vim mixer calls
(``selective_scan``, ``bidirectional_selective_scan``, ``causal_conv1d_silu``),
registered here by name with the tensors it runs on and how to make it
available. Nothing is imported until a backend is first asked for, so a
missing or broken accelerator never breaks ``import mmvim``.

Which one runs:

- ``auto`` (the default, or an empty ``$MMVIM_OPS_BACKEND``): for the tensors'
  device, the first available backend in :func:`auto_order`
  (CPU: ``cpu`` then ``torch``; CUDA: ``cuda``, ``triton``, then ``torch``);
- a name, from :func:`set_backend`, :func:`use_backend` or
  ``$MMVIM_OPS_BACKEND``: that backend, or a RuntimeError saying why it cannot
  run and how to fix it. Nothing falls back silently once a name is forced.

``python -m mmvim.ops`` lists every backend with its availability.
"""
import contextlib
import functools
import importlib
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import (Callable, Dict, Iterator, List, Mapping, NamedTuple,
                    Optional, Tuple, Union)

import torch

BACKEND_ENV = 'MMVIM_OPS_BACKEND'


@dataclass(frozen=True)
class Backend:
    """A named implementation of the Mamba ops.

    Args:
        name: what users pass to :func:`set_backend` / ``$MMVIM_OPS_BACKEND``.
        module: import path of the implementation. It defines the three ops
            and may define ``check()``, raising with the reason the backend
            cannot run here (it is then reported as unavailable).
        description: one line for listings.
        fix: what a user does to make it available.
        device_types: the tensor device types it accepts (``None``: any), or
            a function returning them, asked each time (Triton's interpreter
            adds 'cpu' while it is switched on).
        auto_rank: per device type ('default' for those not named), where
            ``auto`` tries it: lowest first; not tried where absent.
    """
    name: str
    module: str
    description: str
    fix: str
    device_types: Union[None, Tuple[str, ...],
                        Callable[[], Tuple[str, ...]]] = None
    auto_rank: Mapping[str, int] = field(default_factory=dict)

    def accepted_device_types(self) -> Optional[Tuple[str, ...]]:
        types = self.device_types
        return types() if callable(types) else types

    def runs_on(self, device_type: str) -> bool:
        types = self.accepted_device_types()
        return types is None or device_type in types


_BACKENDS: Dict[str, Backend] = {}
_forced: Optional[str] = None


def register_backend(backend: Backend) -> None:
    """Add ``backend`` (or replace the one of that name)."""
    _BACKENDS[backend.name] = backend
    load_backend.cache_clear()


def unregister_backend(name: str) -> None:
    """Remove the backend ``name`` (e.g. one a tool registered for itself)."""
    if _forced == name:
        raise RuntimeError(f'The {name!r} ops backend is forced; '
                           'set_backend(None) first.')
    del _BACKENDS[name]
    load_backend.cache_clear()


def auto_order(device_type: str) -> Tuple[str, ...]:
    """The backends ``auto`` tries for tensors of ``device_type``, in order."""
    ranked = []
    for backend in _BACKENDS.values():
        rank = backend.auto_rank.get(device_type,
                                     backend.auto_rank.get('default'))
        if rank is not None:
            ranked.append((rank, backend.name))
    return tuple(name for _, name in sorted(ranked))


def backend_names() -> Tuple[str, ...]:
    return tuple(_BACKENDS)


def _check_choice(name: str, source: str) -> str:
    if name != 'auto' and name not in _BACKENDS:
        raise ValueError(
            f'Unknown mmvim ops backend {name!r} ({source}): choose one of '
            f"{('auto', *_BACKENDS)}.")
    return name


def set_backend(name: Optional[str]) -> None:
    """Force ``name`` for this process; ``None`` goes back to
    ``$MMVIM_OPS_BACKEND`` (or ``auto``)."""
    global _forced
    _forced = None if name is None else _check_choice(name, 'set_backend')


@contextlib.contextmanager
def use_backend(name: Optional[str]) -> Iterator[None]:
    """Force ``name`` inside a ``with`` block, then restore what was before."""
    previous = _forced
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def requested_backend() -> str:
    """What is asked for: :func:`set_backend`, else ``$MMVIM_OPS_BACKEND``
    (an empty value means auto), else ``auto``."""
    if _forced is not None:
        return _forced
    value = os.environ.get(BACKEND_ENV, '').strip().lower() or 'auto'
    return _check_choice(value, f'${BACKEND_ENV}')


@functools.lru_cache(maxsize=None)
def load_backend(name: str) -> Tuple[Optional[ModuleType], Optional[str]]:
    """Import a backend once: ``(module, None)`` or ``(None, reason)``.

    Any failure counts as unavailable: broken accelerator wheels raise
    ImportError, OSError or RuntimeError when their compiled parts do not
    match the installed torch.
    """
    try:
        module = importlib.import_module(_BACKENDS[name].module)
        if hasattr(module, 'check'):
            module.check()
    except Exception as error:  # noqa: BLE001 - broken means unavailable
        return None, f'{type(error).__name__}: {error}'
    return module, None


class BackendStatus(NamedTuple):
    name: str
    available: bool
    reason: Optional[str]  # why not, when unavailable
    device_types: Optional[Tuple[str, ...]]  # None: any
    description: str


def list_backends() -> List[BackendStatus]:
    """Every registered backend, whether it can run here and why not."""
    statuses = []
    for backend in _BACKENDS.values():
        module, reason = load_backend(backend.name)
        statuses.append(
            BackendStatus(backend.name, module is not None, reason,
                          backend.accepted_device_types(),
                          backend.description))
    return statuses


def resolve(device) -> Tuple[str, ModuleType]:
    """``(name, module)`` of the backend that runs for tensors on ``device``.

    Raises RuntimeError when a forced backend cannot run there.
    """
    device_type = torch.device(device).type
    requested = requested_backend()
    if requested != 'auto':
        backend = _BACKENDS[requested]
        module, reason = load_backend(requested)
        if module is None:
            raise RuntimeError(
                f'The {requested!r} mmvim ops backend was forced but is '
                f'unavailable ({reason}). {backend.fix}, or set '
                f'{BACKEND_ENV}=auto.')
        if not backend.runs_on(device_type):
            raise RuntimeError(
                f'The {requested!r} mmvim ops backend was forced but runs on '
                f'{"/".join(backend.accepted_device_types())} tensors and '
                f'these are on {device_type}: move the model there or set '
                f'{BACKEND_ENV}=auto.')
        return requested, module
    reasons = []
    for name in auto_order(device_type):
        module, reason = load_backend(name)
        if module is not None and _BACKENDS[name].runs_on(device_type):
            return name, module
        reasons.append(f'{name}: {reason or "not for " + device_type}')
    raise RuntimeError(f'No mmvim ops backend runs on {device_type} tensors '
                       f'({"; ".join(reasons)}).')


def get_backend(device=None) -> str:
    """The name of the backend that runs for tensors on ``device`` (default:
    the GPU when there is one, else the CPU)."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return resolve(device)[0]
