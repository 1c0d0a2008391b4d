"""Paint a model's predictions over pictures and save them as PNG.

Segmentation configs (default_scope mmseg) get the predicted mask blended
over the picture; detection configs (mmdet) get boxes and instance masks.
The checkpoint must fit the config exactly (an error names the keys that do
not), and is read weights-only.

    python tools/demo/image_demo.py CONFIG CHECKPOINT a.jpg [b.jpg ...] \\
        --out outputs/demo
"""
import os.path as osp
import sys
import warnings
from pathlib import Path

import cv2
import mmcv
import torch
from mmengine.config import Config

import mmvim  # noqa: F401  registers the Vim backbone and neck
from mmvim.runtime import (CheckpointMismatchError, load_fitting_weights,
                           prepare_process)
from mmvim.runtime.command_line import (init_task_model, task_library,
                                        tool_parser)
from mmvim.runtime.segmentation import predict_segmentation


def parse_args():
    parser = tool_parser(
        __doc__.split('\n')[0], checkpoint_help='checkpoint file')
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
        '--class-names',
        action='store_true',
        help='segmentation: write the class names on the mask (mmseg\'s '
        'labels; about 1.4 GB more memory for a 4000x3000 picture)')
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


def load_model(config, args):
    """The task library's model, with the checkpoint's weights only if they
    fit, and the class names and palette the checkpoint was trained with."""
    with warnings.catch_warnings():
        # init_detector without a checkpoint warns that it uses COCO's
        # classes; the checkpoint's come next.
        warnings.simplefilter('ignore')
        model = init_task_model(config, None, device=args.device)
    checkpoint = load_fitting_weights(model, args.checkpoint)
    dataset_meta = (checkpoint.get('meta') or {}).get('dataset_meta')
    if not dataset_meta:
        raise ValueError(f'{args.checkpoint} has no meta.dataset_meta (the '
                         'class names); use a checkpoint saved by '
                         'tools/train.py or tools/model_converters/'
                         'publish_model.py.')
    model.dataset_meta = {
        key.lower(): value
        for key, value in dataset_meta.items()
    }
    return model


def make_painter(config, args):
    """The model, its predict function, a visualizer that knows its class
    names, and the task's drawing options."""
    if task_library(config) == 'mmdet':
        from mmdet.apis import inference_detector as predict
        from mmdet.visualization import DetLocalVisualizer as Visualizer
        draw_options = dict(pred_score_thr=args.score_thr)
    else:
        from mmseg.visualization import SegLocalVisualizer as Visualizer
        predict = predict_segmentation
        draw_options = dict(with_labels=args.class_names)
    model = load_model(config, args)
    visualizer = Visualizer(name='mmvim_image_demo', alpha=args.opacity)
    visualizer.dataset_meta = model.dataset_meta
    return model, predict, visualizer, draw_options


def read_picture(path: str):
    """The picture as an RGB array; a clear error for a file that is not a
    picture (OpenCV would fail later without naming it)."""
    try:
        image = mmcv.imread(path, channel_order='rgb')
    except cv2.error:  # decoded to nothing, then colour-converted
        image = None
    if image is None:
        raise ValueError(f'{path} cannot be decoded as a picture')
    return image


def main():
    args = parse_args()
    try:
        paths = output_paths(args.images, args.out, args.overwrite)
    except ValueError as error:
        sys.exit(f'error: {error}')
    missing = [image for image in args.images if not osp.isfile(image)]
    if missing:
        sys.exit(f'error: no such picture: {", ".join(missing)}')
    empty = [image for image in args.images if osp.getsize(image) == 0]
    if empty:
        sys.exit(f'error: empty (0-byte) picture: {", ".join(empty)}')

    prepare_process()
    config = Config.fromfile(args.config)
    try:
        model, predict, visualizer, draw_options = make_painter(config, args)
    except (ValueError, FileNotFoundError, CheckpointMismatchError) as error:
        sys.exit(f'error: {error}')
    for image_path, out_path in zip(args.images, paths):
        try:
            image = read_picture(image_path)
        except ValueError as error:
            sys.exit(f'error: {error}')
        try:
            result = predict(model, image_path)
        except RuntimeError as error:
            height, width = image.shape[:2]
            hint = (' The picture is smaller than the model can take: use a '
                    'config whose test pipeline resizes it (the ADE20K and '
                    'COCO configs do), or a larger picture.'
                    if 'too small' in str(error) else '')
            sys.exit(f'error: {image_path} ({width}x{height}) could not be '
                     f'predicted: {error}.{hint}')
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if args.overwrite and out_path.exists():
            # asked for; the tools' writes never replace files themselves
            out_path.unlink()
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
