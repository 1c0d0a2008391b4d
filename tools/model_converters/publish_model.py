"""Turn a training checkpoint into a release file.

Keeps ``state_dict`` and the parts of ``meta`` a user of the weights needs
(the class names and palette, the step, versions); drops optimizer,
schedulers, message hub, and the config text, which carries the training
machine's absolute data and work paths. Names the file
``<out>-<sha256[:8]>.pth`` like OpenMMLab's model zoo (``<out>`` without a
``.pth``/``.pt`` it ends with; a folder, ending in ``/`` or existing, gets
``<checkpoint name>-<sha256[:8]>.pth`` inside), writes it atomically and
never overwrites an existing file. The result loads with
``torch.load(weights_only=True)`` and no allow-list.

    python tools/model_converters/publish_model.py \
        work_dirs/upernet_vim_tiny/iter_60000.pth upernet_vim_tiny_ade20k.pth
"""
import argparse
import hashlib
import io
import os
from pathlib import Path

import torch

from mmvim.runtime import (
    OverwriteRefusedError,
    load_checkpoint_file,
    write_atomically,
)
from mmvim.runtime.checkpoint_loading import to_plain_checkpoint
from mmvim.runtime.command_line import add_debug_option, user_errors

# Checkpoint suffixes the hash goes before; any other name gets '.pth'.
CHECKPOINT_SUFFIXES = ('.pth', '.pt')

# meta entries a release keeps: none of them holds a path.
PUBLISHED_META = ('dataset_meta', 'epoch', 'iter', 'mmengine_version', 'seed',
                  'time')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint',
                        help='checkpoint saved by tools/train.py')
    parser.add_argument(
        'out',
        help='output file name (the hash is appended), or a folder (ending '
        'in / or existing) that receives <checkpoint name>-<hash>.pth')
    add_debug_option(parser)
    return parser.parse_args(argv)


def release_name(checkpoint: str, out: str, digest: str) -> Path:
    """Where the release of ``checkpoint`` goes: ``out`` with ``-<digest>``
    before its ``.pth``/``.pt`` (or ``-<digest>.pth`` after any other
    name), or, for a folder, the checkpoint's name so inside it."""
    if out.endswith(('/', os.sep)) or Path(out).is_dir():
        out = str(Path(out) / Path(checkpoint).name)
    out = Path(out)
    suffix = out.suffix if out.suffix in CHECKPOINT_SUFFIXES else ''
    stem = out.name[:len(out.name) - len(suffix)]
    return out.with_name(f'{stem}-{digest}{suffix or ".pth"}')


def publish(checkpoint: str, out: str) -> Path:
    loaded = load_checkpoint_file(checkpoint)
    if not isinstance(loaded, dict) or 'state_dict' not in loaded:
        raise ValueError(f'{checkpoint} is not an mmengine checkpoint '
                         "(no 'state_dict' entry).")
    meta = loaded.get('meta') or {}
    slim = {
        'state_dict': loaded['state_dict'],
        'meta': {key: meta[key] for key in PUBLISHED_META if key in meta}
    }
    to_plain_checkpoint(slim)
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    data = buffer.getvalue()
    final = release_name(checkpoint, out, hashlib.sha256(data).hexdigest()[:8])
    try:
        if final.exists():  # even one this process wrote
            raise OverwriteRefusedError
        write_atomically(data, final)
    except OverwriteRefusedError:
        raise FileExistsError(
            f'{final} already exists; not overwriting it.') from None
    return final


def main(argv=None):
    args = parse_args(argv)
    with user_errors(ValueError, FileExistsError, FileNotFoundError):
        final = publish(args.checkpoint, args.out)
    print(f'wrote {final}')


if __name__ == '__main__':
    main()
