"""Paint a model's predictions over pictures and save them as PNG.

Segmentation configs (default_scope mmseg) get the predicted mask blended
over the picture; detection configs (mmdet) get boxes and instance masks.

    python tools/demo/image_demo.py CONFIG CHECKPOINT a.jpg [b.jpg ...] \\
        --out outputs/demo
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

import mmcv
import torch
from mmengine.config import Config

import mmvim  # noqa: F401  registers the Vim backbone and neck
from mmvim.engine import allow_mmengine_checkpoints


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('images', nargs='+', help='picture files')
    parser.add_argument(
        '--out',
        default='outputs/demo',
        help='a .png file (one picture) or a folder that receives '
        '<picture name>.png per picture (default: %(default)s)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace output files that already exist')
    parser.add_argument(
        '--device',
        default='cuda:0' if torch.cuda.is_available() else 'cpu',
        help='default: %(default)s')
    parser.add_argument(
        '--opacity',
        type=float,
        default=0.5,
        help='weight of the painted masks, in (0, 1]')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='detection: lowest score of a drawn instance')
    return parser.parse_args()


def output_paths(images, out: str, overwrite: bool):
    """Maps each picture to its PNG; refuses to replace existing files."""
    if out.lower().endswith('.png'):
        if len(images) != 1:
            raise ValueError('--out names one .png file but several '
                             'pictures were given; pass a folder instead')
        paths = [Path(out)]
    else:
        paths = [Path(out) / f'{Path(image).stem}.png' for image in images]
    if len(set(paths)) != len(paths):
        raise ValueError('two pictures share a name; they would write the '
                         'same output file')
    existing = [str(path) for path in paths if path.exists()]
    if existing and not overwrite:
        raise ValueError(f'{", ".join(existing)} already exist; pass '
                         '--overwrite to replace them or choose another --out')
    return paths


def segmentation_painter(config, args):
    from mmseg.apis import inference_model, init_model
    from mmseg.visualization import SegLocalVisualizer
    model = init_model(config, args.checkpoint, device=args.device)
    visualizer = SegLocalVisualizer(
        name='mmvim_image_demo', alpha=args.opacity)
    visualizer.dataset_meta = model.dataset_meta
    return model, inference_model, visualizer, {}


def detection_painter(config, args):
    from mmdet.apis import inference_detector, init_detector
    from mmdet.visualization import DetLocalVisualizer
    model = init_detector(config, args.checkpoint, device=args.device)
    visualizer = DetLocalVisualizer(
        name='mmvim_image_demo', alpha=args.opacity)
    visualizer.dataset_meta = model.dataset_meta
    return model, inference_detector, visualizer, dict(
        pred_score_thr=args.score_thr)


def main():
    args = parse_args()
    try:
        paths = output_paths(args.images, args.out, args.overwrite)
    except ValueError as error:
        sys.exit(f'error: {error}')
    missing = [image for image in args.images if not osp.isfile(image)]
    if missing:
        sys.exit(f'error: no such picture: {", ".join(missing)}')

    allow_mmengine_checkpoints()
    config = Config.fromfile(args.config)
    make_painter = (
        detection_painter if config.get('default_scope') == 'mmdet' else
        segmentation_painter)
    model, predict, visualizer, draw_options = make_painter(config, args)
    for image_path, out_path in zip(args.images, paths):
        result = predict(model, image_path)
        image = mmcv.imread(image_path, channel_order='rgb')
        out_path.parent.mkdir(parents=True, exist_ok=True)
        visualizer.add_datasample(
            out_path.stem,
            image,
            data_sample=result,
            draw_gt=False,
            out_file=str(out_path),
            **draw_options)
        print(f'{image_path} -> {out_path}')


if __name__ == '__main__':
    main()
