"""Files the tools write appear whole or not at all, and never replace a
file this process did not write.

mmengine writes checkpoints with ``open(path, 'wb')`` through its local file
backend: a process killed mid-write leaves a truncated file under the final
name, and a second run with the same file names silently replaces the first
run's files. :func:`write_atomically` writes to a hidden temporary file in
the same folder, fsyncs it, and only then gives it its name, with a hard link
that fails if the name is taken. :func:`use_atomic_local_writes` routes
mmengine's local backend (checkpoints, dumped results) through it.
"""
import errno
import os
import os.path as osp
import re
from typing import List, Set, Union

from mmengine.fileio import LocalBackend, register_backend

# Hidden temporaries: ".<name>.<pid>.tmp" next to the file they become.
TEMPORARY_NAME = re.compile(r'^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$')
_written_by_this_process: Set[str] = set()


class OverwriteRefusedError(FileExistsError):
    """The target exists and was not written by this process."""


def _fsync_directory(directory: str) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def give_name(temporary: str, path: str, replace: bool = False) -> None:
    """Names the finished file ``temporary`` (in ``path``'s folder)
    ``path``, atomically. An existing ``path`` is replaced only when
    ``replace`` is True or this process wrote it; otherwise
    :class:`OverwriteRefusedError` (the temporary is left for the caller)."""
    if replace or path in _written_by_this_process:
        os.replace(temporary, path)
        return
    try:
        # Atomic and never replaces: fails with EEXIST if the name is taken.
        os.link(temporary, path)
    except FileExistsError:
        raise OverwriteRefusedError(
            f'{path} already exists and was not written by this run; '
            'refusing to replace it. Move it away or write elsewhere (e.g. '
            'another --work-dir or --out).') from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV,
                               errno.EMLINK):
            raise
        # A file system without hard links: check, then rename.
        if osp.lexists(path):
            raise OverwriteRefusedError(
                f'{path} already exists and was not written by this run; '
                'refusing to replace it.') from None
        os.replace(temporary, path)
        return
    os.unlink(temporary)


def write_atomically(data: Union[bytes, bytearray, memoryview],
                     path: Union[str, os.PathLike]) -> None:
    """Writes ``data`` to ``path``: temporary file, fsync, then the name.

    A crash at any point leaves either no file named ``path`` or the
    complete one (plus, at worst, a hidden ``.<name>.<pid>.tmp`` that
    :func:`stale_temporaries` finds). ``path`` may be replaced only if this
    process wrote it before.

    Raises:
        OverwriteRefusedError: ``path`` exists and this process did not
            write it.
    """
    path = osp.abspath(os.fspath(path))
    directory, name = osp.split(path)
    os.makedirs(directory, exist_ok=True)
    if path not in _written_by_this_process and osp.lexists(path):
        # Checked again when naming; failing here spares the write.
        raise OverwriteRefusedError(
            f'{path} already exists and was not written by this run; '
            'refusing to replace it. Move it away or write elsewhere (e.g. '
            'another --work-dir or --out).')
    temporary = osp.join(directory, f'.{name}.{os.getpid()}.tmp')
    try:
        with open(temporary, 'wb') as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        give_name(temporary, path)
    finally:
        if osp.lexists(temporary):
            os.unlink(temporary)
    _fsync_directory(directory)
    _written_by_this_process.add(path)


def stale_temporaries(directory: str) -> List[str]:
    """Temporaries in ``directory`` left by processes that no longer run
    (killed mid-write): never a file anyone can use."""
    if not osp.isdir(directory):
        return []
    stale = []
    for entry in sorted(os.listdir(directory)):
        match = TEMPORARY_NAME.match(entry)
        if match and not _process_runs(int(match.group('pid'))):
            stale.append(osp.join(directory, entry))
    return stale


def _process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend with :func:`write_atomically` writes."""

    def put(self, obj: bytes, filepath) -> None:
        write_atomically(obj, filepath)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        write_atomically(obj.encode(encoding), filepath)


def use_atomic_local_writes() -> None:
    """Makes mmengine's local file backend write atomically, for this
    process (the tools call it; the library never does)."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
