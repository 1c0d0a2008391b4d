"""Test-only: makes a training process die with SIGKILL (as ``kill -9``:
no clean-up, no flush) at a chosen point, for the crash tests. Imported by
the crash tests' config through ``custom_imports``; ``MMVIM_TEST_FAULT``
picks the point:

* ``write:N:mid``: half-way through the bytes of this process's N-th
  checkpoint file;
* ``write:N:unnamed``: once that file is written and fsynced, before it gets
  its final name;
* ``rank:R:iter:K``: in the process of rank R, after training iteration K
  (and its checkpoint).
"""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmvim.runtime import atomic_files

FAULT = os.environ.get('MMVIM_TEST_FAULT', '').split(':')


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _HalfThenDie:
    """A file whose first write stores half of its bytes, then dies."""

    def __init__(self, file):
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return self.file.__exit__(*exc_info)

    def write(self, data):
        self.file.write(data[:len(data) // 2])
        self.file.flush()
        die()


def _checkpoint_writes(fault_at: int):
    """Counts this process's checkpoint writes; True at the chosen one."""
    count = 0

    def is_fault(path: str) -> bool:
        nonlocal count
        if '.pth' not in os.path.basename(path):
            return False
        count += 1
        return count == fault_at

    return is_fault


def kill_mid_write(module, fault_at: int) -> None:
    """Makes the ``open()`` of ``module`` (its own name only) return, for
    the ``fault_at``-th checkpoint file it opens for writing, a file whose
    first write stores half of its bytes and then dies."""
    is_fault = _checkpoint_writes(fault_at)

    def open_dying(path, mode='r', *args, **kwargs):
        file = open(path, mode, *args, **kwargs)
        return _HalfThenDie(file) if 'w' in mode and is_fault(
            os.fspath(path)) else file

    module.open = open_dying


def kill_before_naming(fault_at: int) -> None:
    """Dies when the ``fault_at``-th checkpoint, written and fsynced, is
    about to get its final name."""
    is_fault = _checkpoint_writes(fault_at)
    give_name = atomic_files.give_name

    def give_name_or_die(temporary, path, replace=False):
        if is_fault(path):
            die()
        give_name(temporary, path, replace)

    atomic_files.give_name = give_name_or_die


if FAULT[0] == 'write' and FAULT[2] == 'mid':
    kill_mid_write(atomic_files, int(FAULT[1]))
elif FAULT[0] == 'write':
    kill_before_naming(int(FAULT[1]))


@HOOKS.register_module()
class FaultInjectionHook(Hook):
    """Dies after training iteration K in the process of rank R
    (``MMVIM_TEST_FAULT=rank:R:iter:K``); does nothing otherwise."""
    priority = 'LOWEST'  # after the checkpoint of that iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if FAULT[0] == 'rank' and runner.rank == int(FAULT[1]) and \
                runner.iter + 1 == int(FAULT[3]):
            die()
