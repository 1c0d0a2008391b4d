"""The one place that decides which implementation of the Mamba ops runs.

A backend is a module defining the two operators the Vim mixer calls,
``selective_scan`` and ``causal_conv1d_silu`` (the ``torch.library`` operators
of :mod:`mmvim.ops.library`), registered here by name with the tensors it
runs on and how to make it available. Nothing is imported until a backend is
first asked for, so a missing or broken accelerator never breaks
``import mmvim``.

Which one runs:

- ``auto`` (the default, or an empty ``$MMVIM_OPS_BACKEND``): for the tensors'
  device, the first available backend in :func:`auto_order`
  (CPU: ``cpu`` then ``torch``; CUDA: ``cuda``, ``triton``, then ``torch``);
- a name, from :func:`use_backend` (this thread, inside a ``with`` block),
  :func:`set_backend` (the whole process) or ``$MMVIM_OPS_BACKEND`` (read when
  mmvim is imported and by ``set_backend(None)``): that backend, or an error
  saying why it cannot run and how to fix it. Nothing falls back silently
  once a name is forced.

A forward pass only reads this module's state: the choice is resolved once
per (choice, device type) and kept, so ``torch.compile`` traces a plain call
of one operator (guarded on the choice) and nothing is imported or read from
the environment per call.

``python -m mmvim.ops`` lists every backend with its availability.
"""
import contextlib
import importlib
import os
import threading
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
        module: import path of the implementation. It defines
            ``selective_scan`` and ``causal_conv1d_silu`` (operators with the
            schemas of :mod:`mmvim.ops.library`), and may define
            ``rms_norm`` (an operator for :func:`mmvim.ops.rms_norm`)
            and ``check()``, raising with the reason the backend cannot run
            here (it is then reported as unavailable).
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
# name -> (module or None where it did not import, why it cannot run or None)
_loaded: Dict[str, Tuple[Optional[ModuleType], Optional[str]]] = {}
# (requested, device type) -> the name of what runs
_resolved: Dict[Tuple[str, str], str] = {}
# set_backend's choice, or $MMVIM_OPS_BACKEND's value as read
_process_choice = {'value': ''}
# use_backend's and simulate_backend's choices, per thread
_thread = threading.local()


def _forget_resolutions(name: Optional[str] = None) -> None:
    _resolved.clear()
    if name is not None:
        _loaded.pop(name, None)


def register_backend(backend: Backend) -> None:
    """Add ``backend`` (or replace the one of that name)."""
    _BACKENDS[backend.name] = backend
    _forget_resolutions(backend.name)


def unregister_backend(name: str) -> None:
    """Remove the backend ``name`` (e.g. one a tool registered for itself)."""
    if requested_backend() == name:
        raise RuntimeError(f'The {name!r} ops backend is forced; '
                           'set_backend(None) first.')
    del _BACKENDS[name]
    _forget_resolutions(name)


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


def _read_environment() -> str:
    return os.environ.get(BACKEND_ENV, '').strip().lower() or 'auto'


def set_backend(name: Optional[str]) -> None:
    """Force ``name`` for the whole process; ``None`` goes back to
    ``$MMVIM_OPS_BACKEND`` (read again now), or ``auto``."""
    _process_choice['value'] = _read_environment() if name is None else \
        _check_choice(name, 'set_backend')


@contextlib.contextmanager
def _for_this_thread(setting: str, value) -> Iterator[None]:
    """This thread's ``setting`` is ``value`` inside, then what it was."""
    previous = getattr(_thread, setting, None)
    setattr(_thread, setting, value)
    try:
        yield
    finally:
        setattr(_thread, setting, previous)


@contextlib.contextmanager
def use_backend(name: Optional[str]) -> Iterator[None]:
    """Force ``name`` for this thread inside a ``with`` block (``None``: the
    process's choice), then restore what this thread had before. Other
    threads do not see it."""
    if name is not None:
        _check_choice(name, 'use_backend')
    with _for_this_thread('choice', name):
        yield


def requested_backend() -> str:
    """What is asked for: this thread's :func:`use_backend`, else
    :func:`set_backend`'s, else ``$MMVIM_OPS_BACKEND`` (an empty value means
    auto), else ``auto``. ValueError for an unknown name in the variable."""
    choice = getattr(_thread, 'choice', None)
    if choice is not None:
        return choice
    choice = _process_choice['value']
    if choice == 'auto' or choice in _BACKENDS:
        return choice
    return _check_choice(choice, f'${BACKEND_ENV}')


def load_backend(name: str) -> Tuple[Optional[ModuleType], Optional[str]]:
    """Import a backend once: ``(module, None)`` when it can run here, else
    ``(module or None, reason)``.

    Any failure counts as unavailable: broken accelerator wheels raise
    ImportError, OSError or RuntimeError when their compiled parts do not
    match the installed torch.
    """
    if name not in _loaded:
        module = None
        try:
            module = importlib.import_module(_BACKENDS[name].module)
            if hasattr(module, 'check'):
                module.check()
            _loaded[name] = (module, None)
        except Exception as error:  # noqa: BLE001 - broken means unavailable
            _loaded[name] = (module, f'{type(error).__name__}: {error}')
    return _loaded[name]


class BackendStatus(NamedTuple):
    name: str
    available: bool
    reason: Optional[str]  # why not, when unavailable
    device_types: Optional[Tuple[str, ...]]  # None: any
    description: str
    fix: str


def list_backends() -> List[BackendStatus]:
    """Every registered backend, whether it can run here and why not."""
    statuses = []
    for backend in _BACKENDS.values():
        _, reason = load_backend(backend.name)
        statuses.append(
            BackendStatus(backend.name, reason is None, reason,
                          backend.accepted_device_types(),
                          backend.description, backend.fix))
    return statuses


def _resolve_requested(requested: str, device_type: str) -> str:
    if requested != 'auto':
        backend = _BACKENDS[requested]
        _, reason = load_backend(requested)
        if reason is not None:
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
        return requested
    reasons = []
    for name in auto_order(device_type):
        _, reason = load_backend(name)
        if reason is None and _BACKENDS[name].runs_on(device_type):
            return name
        reasons.append(f'{name}: {reason or "not for " + device_type}')
    raise RuntimeError(f'No mmvim ops backend runs on {device_type} tensors '
                       f'({"; ".join(reasons)}).')


def _resolved_name(requested: str, device_type: str) -> str:
    """The backend that runs for ``requested`` on ``device_type``, worked out
    (imports and availability checks) once. Under ``torch.compile`` dynamo
    calls it while tracing and keeps the name as a constant: what it depends
    on, the choice and the device type, are traced (and guarded) by the
    caller, so a new choice recompiles."""
    key = (requested, device_type)
    if key not in _resolved:
        _resolved[key] = _resolve_requested(requested, device_type)
    return _resolved[key]


# What torch.compiler.assume_constant_result(_resolved_name) sets; calling it
# would import torch._dynamo, and with it triton, at `import mmvim` (a broken
# triton must not break that). tests/ops/test_compile.py checks the name.
_resolved_name._dynamo_marked_constant = True


def resolve(device) -> Tuple[str, ModuleType]:
    """``(name, module)`` of the backend that runs for tensors on ``device``.

    Raises RuntimeError when a forced backend cannot run there. Inside
    :func:`simulate_backend`, the simulated backend whatever the device.
    """
    name = getattr(_thread, 'simulated', None)
    if name is None:
        device_type = device.type if isinstance(device, torch.device) else \
            torch.device(device).type
        name = _resolved_name(requested_backend(), device_type)
    return name, _loaded[name][0]


def get_backend(device=None) -> str:
    """The name of the backend that runs for tensors on ``device`` (default:
    the GPU when there is one, else the CPU)."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return resolve(device)[0]


@contextlib.contextmanager
def simulate_backend(name: str) -> Iterator[None]:
    """Inside, this thread's ops call backend ``name``'s operators whatever
    the tensors' device and whether the backend can run on this machine: for
    tracing under ``FakeTensorMode`` only (estimating a GPU run's memory on
    a CPU, say), where only the operators' fake implementations run. The
    backend must import (its fake implementations are Python)."""
    module, reason = load_backend(_check_choice(name, 'simulate_backend'))
    if module is None:
        raise RuntimeError(f'The {name!r} mmvim ops backend cannot be '
                           f'simulated: it does not import ({reason}).')
    with _for_this_thread('simulated', name):
        yield


set_backend(None)
