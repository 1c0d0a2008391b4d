"""Draw the training curves of an mmvim work dir: loss, lr, eval metrics.

Reads mmengine's ``<timestamp>/vis_data/scalars.json`` of every run in the
work dir (a resumed run continues the curves), for segmentation and
detection runs alike (mmseg's and mmdet's analyze_logs.py read the older
json logs instead):

    python tools/analysis_tools/plot_curves.py WORK_DIR [--out curves.png] \\
        [--metrics mIoU mAcc] [--overwrite]
"""
import argparse
import os
from pathlib import Path

from mmvim.runtime.command_line import add_debug_option, user_errors
from mmvim.visualization import load_scalars, plot_curves


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'work_dir', help='work dir of a run (or one scalars.json)')
    parser.add_argument(
        '--out',
        help='PNG to write, or a folder (ending in / or existing) that '
        'receives curves.png (default: WORK_DIR/curves.png)')
    parser.add_argument(
        '--metrics',
        nargs='+',
        help='evaluation keys to draw (default: mIoU for segmentation, '
        'coco/bbox_mAP and coco/segm_mAP for detection, else all)')
    parser.add_argument(
        '--title', help='figure title (default: the work dir)')
    parser.add_argument(
        '--overwrite', action='store_true', help='replace an existing --out')
    add_debug_option(parser)
    return parser.parse_args(argv)


def output_path(work_dir: Path, out) -> Path:
    """``--out``, its ``curves.png`` for a folder, or the default."""
    default_dir = work_dir.parent if work_dir.is_file() else work_dir
    if out is None:
        return default_dir / 'curves.png'
    if out.endswith(('/', os.sep)) or Path(out).is_dir():
        return Path(out) / 'curves.png'
    return Path(out)


def main(argv=None):
    args = parse_args(argv)
    work_dir = Path(args.work_dir)
    out = output_path(work_dir, args.out)
    with user_errors(FileNotFoundError, FileExistsError, ValueError):
        if out.exists() and not args.overwrite:
            raise FileExistsError(f'{out} already exists; pass --overwrite '
                                  'to replace it or choose another --out')
        scalars = load_scalars(work_dir)
        drawn = plot_curves(
            scalars,
            out,
            metrics=args.metrics,
            title=args.title or str(work_dir),
            overwrite=True)
    print(f'{out}: {", ".join(drawn)} from {len(scalars.train)} training '
          f'and {len(scalars.evaluation)} evaluation records')
    return out


if __name__ == '__main__':
    main()
