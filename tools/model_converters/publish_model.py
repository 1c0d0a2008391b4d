"""Turn a training checkpoint into a release file.

Keeps ``state_dict`` and ``meta`` (drops optimizer, schedulers and message
hub), names the file ``<out>-<sha256[:8]>.pth`` like OpenMMLab's model zoo,
and never overwrites an existing file.

    python tools/model_converters/publish_model.py \
        work_dirs/upernet_vim_tiny/iter_60000.pth upernet_vim_tiny_ade20k.pth
"""
import argparse
import hashlib
import sys
from pathlib import Path

import torch

from mmvim.engine import allow_mmengine_checkpoints


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='checkpoint saved by tools/train.py')
    parser.add_argument('out', help='output file name (the hash is appended)')
    return parser.parse_args(argv)


def publish(checkpoint: str, out: str) -> Path:
    allow_mmengine_checkpoints()
    loaded = torch.load(checkpoint, map_location='cpu', weights_only=True)
    if not isinstance(loaded, dict) or 'state_dict' not in loaded:
        raise ValueError(f'{checkpoint} is not an mmengine checkpoint '
                         "(no 'state_dict' entry).")
    slim = {'state_dict': loaded['state_dict'],
            'meta': loaded.get('meta', {})}
    out = Path(out)
    temporary = out.with_name(out.stem + '.tmp.pth')
    if temporary.exists():
        raise FileExistsError(f'{temporary} exists; remove it first.')
    torch.save(slim, temporary)
    digest = hashlib.sha256(temporary.read_bytes()).hexdigest()[:8]
    final = out.with_name(f'{out.stem}-{digest}{out.suffix or ".pth"}')
    if final.exists():
        temporary.unlink()
        raise FileExistsError(f'{final} already exists; not overwriting it.')
    temporary.rename(final)
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
