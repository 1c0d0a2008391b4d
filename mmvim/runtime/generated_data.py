"""Folders the toy-data generators write, made ready without losing what a
user keeps beside them."""
import shutil
from pathlib import Path
from typing import Sequence, Union


def clear_generated_folders(root: Union[str, Path], folders: Sequence[str],
                            overwrite: bool) -> Path:
    """Returns ``root`` as a Path, ready for a generator that writes
    ``folders`` under it: a non-empty ``root`` is refused unless
    ``overwrite``, which then removes those folders only (any other file
    in ``root`` stays)."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            names = ', '.join(f'{name}/' for name in folders)
            raise FileExistsError(
                f'{root} exists and is not empty; pass --overwrite to '
                f'replace its {names} folders')
        for name in folders:
            shutil.rmtree(root / name, ignore_errors=True)
    return root
