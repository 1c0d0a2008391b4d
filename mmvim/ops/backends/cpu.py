"""The ``cpu`` backend: mmvim's compiled selective scan and causal conv
(mmvim/ops/csrc), operators registered from C++ through the LibTorch stable
ABI (``mmvim::selective_scan_cpu``, ``mmvim::causal_conv1d_silu_cpu`` and their
backward operators), and ``mmvim::rms_norm_cpu`` and its backward, the blocks'
RMSNorm that :func:`mmvim.ops.rms_norm` calls for float32 tensors.

The library is built at install for the installing machine (setup.py), which
writes a build record beside it: its SHA-256 and the instruction sets it was
compiled for. Both are checked *before* the library is loaded, because
loading a truncated file crashes the process with SIGBUS and code for
instructions the CPU lacks with SIGILL; either is reported as the reason the
backend is unavailable instead, and auto falls back to ``torch``.
"""
import hashlib
import json
import platform
from pathlib import Path

import torch

from ..cpu_info import cpu_flags
from ..library import (SavedStates, conv_operator, norm_operator,
                       register_conv_python_parts, register_norm_python_parts,
                       register_scan_python_parts, scan_operator)

PACKAGE_DIR = Path(__file__).resolve().parent.parent
LIBRARY_STEM = '_cpu_ops'
REBUILD = 'rebuild it: `pip install --no-build-isolation -e .` (or `make ' \
    'install`) with a C++ compiler, MMVIM_WITH_CPU_OPS unset'
# The stable ABI version the library is built against (setup.py): older
# torch releases cannot load it.
MINIMUM_TORCH = (2, 10)
# The forward saves the state at the start of every 64-token chunk
# (kChunk in csrc/selective_scan_cpu.cpp).
SAVED = SavedStates(chunk_length=lambda length: 64)


def build_record() -> dict:
    """The record setup.py wrote beside the library (RuntimeError naming the
    problem and the fix when there is none)."""
    records = sorted(PACKAGE_DIR.glob(f'{LIBRARY_STEM}*.so.json'))
    libraries = sorted(PACKAGE_DIR.glob(f'{LIBRARY_STEM}*.so'))
    if not records:
        found = f'{libraries[0].name} has no build record' if libraries \
            else 'not built'
        raise RuntimeError(f'compiled CPU operators {found}: {REBUILD}')
    try:
        return json.loads(records[-1].read_text())
    except (OSError, ValueError) as error:
        raise RuntimeError(f'unreadable build record {records[-1]} '
                           f'({error}): {REBUILD}') from error


def verified_library(record: dict) -> Path:
    """The library's path, once its bytes match the record and this machine
    can run it; RuntimeError with the reason and the fix otherwise."""
    library = PACKAGE_DIR / record.get('library', '')
    try:
        digest = hashlib.sha256(library.read_bytes()).hexdigest()
    except OSError as error:
        raise RuntimeError(f'cannot read {library.name} ({error}): '
                           f'{REBUILD}') from error
    if digest != record.get('sha256'):
        raise RuntimeError(
            f'{library.name} is damaged or was replaced since it was built '
            f'(its SHA-256 differs from the build record): {REBUILD}')
    torch_version = tuple(
        int(part) for part in torch.__version__.split('+')[0].split('.')[:2])
    if torch_version < MINIMUM_TORCH:
        raise RuntimeError(
            f'torch {torch.__version__} predates the stable ABI '
            f'{".".join(map(str, MINIMUM_TORCH))} the library needs: upgrade '
            'torch')
    flags = cpu_flags()
    if flags is not None and platform.machine() in ('x86_64', 'AMD64'):
        missing = [isa for isa in record.get('isa', []) if isa not in flags]
        if missing:
            raise RuntimeError(
                f'{library.name} was built for {"/".join(missing)}, which '
                f'this CPU lacks: {REBUILD} on this machine, or build a '
                'portable one with MMVIM_CPU_MARCH=x86-64-v3 (or x86-64)')
    return library


torch.ops.load_library(str(verified_library(build_record())))
register_scan_python_parts('cpu', SAVED)
register_conv_python_parts('cpu')
register_norm_python_parts('cpu')
selective_scan = scan_operator('cpu')
causal_conv1d_silu = conv_operator('cpu')
rms_norm = norm_operator('cpu')
