"""Draw the training curves of an mmvim work dir: loss, lr, eval metrics.

Reads mmengine's ``<timestamp>/vis_data/scalars.json`` of every run in the
work dir (a resumed run continues the curves), for segmentation and
detection runs alike (mmseg's and mmdet's analyze_logs.py read the older
json logs instead):

    python tools/analysis_tools/plot_curves.py WORK_DIR [--out curves.png] \\
        [--metrics mIoU mAcc] [--overwrite]
"""
import argparse
import sys
from pathlib import Path

from mmvim.visualization import load_scalars, plot_curves


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'work_dir', help='work dir of a run (or one scalars.json)')
    parser.add_argument(
        '--out', help='PNG to write (default: WORK_DIR/curves.png)')
    parser.add_argument(
        '--metrics',
        nargs='+',
        help='evaluation keys to draw (default: mIoU for segmentation, '
        'coco/bbox_mAP and coco/segm_mAP for detection, else all)')
    parser.add_argument(
        '--title', help='figure title (default: the work dir)')
    parser.add_argument(
        '--overwrite', action='store_true', help='replace an existing --out')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    work_dir = Path(args.work_dir)
    default_dir = work_dir.parent if work_dir.is_file() else work_dir
    out = Path(args.out) if args.out else default_dir / 'curves.png'
    if out.exists() and not args.overwrite:
        sys.exit(f'error: {out} already exists; pass --overwrite to replace '
                 'it or choose another --out')
    try:
        scalars = load_scalars(work_dir)
        drawn = plot_curves(
            scalars,
            out,
            metrics=args.metrics,
            title=args.title or str(work_dir),
            overwrite=True)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'error: {error}')
    print(f'{out}: {", ".join(drawn)} from {len(scalars.train)} training '
          f'and {len(scalars.evaluation)} evaluation records')
    return out


if __name__ == '__main__':
    main()
