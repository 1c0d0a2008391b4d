"""Turn a training checkpoint into a release file.

Keeps ``state_dict`` and the parts of ``meta`` a user of the weights needs
(the class names and palette, the step, versions); drops optimizer,
schedulers, message hub, and the config text, which carries the training
machine's absolute data and work paths. Names the file
``<out>-<sha256[:8]>.pth`` like OpenMMLab's model zoo, writes it atomically
and never overwrites an existing file. The result loads with
``torch.load(weights_only=True)`` and no allow-list.

    python tools/model_converters/publish_model.py \
        work_dirs/upernet_vim_tiny/iter_60000.pth upernet_vim_tiny_ade20k.pth
"""
import argparse
import hashlib
import io
import sys
from pathlib import Path

import torch

from mmvim.runtime import (
    OverwriteRefusedError,
    load_checkpoint_file,
    write_atomically,
)
from mmvim.runtime.checkpoint_loading import to_plain_checkpoint

# meta entries a release keeps: none of them holds a path.
PUBLISHED_META = ('dataset_meta', 'epoch', 'iter', 'mmengine_version', 'seed',
                  'time')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint',
                        help='checkpoint saved by tools/train.py')
    parser.add_argument('out', help='output file name (the hash is appended)')
    return parser.parse_args(argv)


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
    digest = hashlib.sha256(data).hexdigest()[:8]
    out = Path(out)
    final = out.with_name(f'{out.stem}-{digest}{out.suffix or ".pth"}')
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
    try:
        final = publish(args.checkpoint, args.out)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        sys.exit(f'error: {error}')
    print(f'wrote {final}')


if __name__ == '__main__':
    main()
