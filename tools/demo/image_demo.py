"""Paint a model's predictions over pictures and save them as PNG.

Segmentation configs (default_scope mmseg) get the predicted mask blended
over the picture; detection configs (mmdet) get boxes and instance masks.
The checkpoint must fit the config exactly (an error names the keys that do
not), and is read weights-only. A segmentation is computed and painted in
bounded memory (:mod:`mmvim.runtime.segmentation`), whatever the picture's
size.

    python tools/demo/image_demo.py CONFIG CHECKPOINT a.jpg [b.jpg ...] \\
        --out outputs/demo
"""
import argparse
import math
import os.path as osp
import warnings
from pathlib import Path

import cv2
import mmcv
import torch
from mmengine.config import Config

import mmvim  # noqa: F401  registers the Vim backbone and neck
from mmvim.runtime import (RunSetupError, check_checkpoint_loads,
                           load_fitting_weights, ops_backend_line,
                           prepare_process, write_atomically)
from mmvim.runtime.command_line import (init_task_model, task_library,
                                        tool_parser, user_errors)
from mmvim.runtime.input_size import check_network_input, smallest_input_side
from mmvim.runtime.segmentation import paint_segmentation, predict_segmentation


def fraction(low_open: bool):
    """An argparse type: a number in (0, 1] (``low_open``) or [0, 1]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0 < value <= 1 if low_open else 0 <= value <= 1):
            raise argparse.ArgumentTypeError(
                f'{text} is not a number in {"(" if low_open else "["}0, 1]')
        return value

    return parse


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
        type=fraction(low_open=True),
        default=0.5,
        help='weight of the painted masks, in (0, 1]')
    parser.add_argument(
        '--class-names',
        action='store_true',
        help='segmentation: write the class names on the mask (mmseg\'s '
        'labels; about 1.4 GB more memory for a 4000x3000 picture)')
    parser.add_argument(
        '--score-thr',
        type=fraction(low_open=False),
        default=0.3,
        help='detection: lowest score of a drawn instance, in [0, 1]')
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
        raise RunSetupError(f'{args.checkpoint} has no meta.dataset_meta '
                            '(the class names); use a checkpoint saved by '
                            'tools/train.py or tools/model_converters/'
                            'publish_model.py.')
    model.dataset_meta = {
        key.lower(): value
        for key, value in dataset_meta.items()
    }
    return model


def detection_predictor(model, smallest_side: int):
    """mmdet's ``inference_detector`` for one picture path, with the
    picture's size after the test pipeline checked first."""
    from mmcv.transforms import Compose
    from mmdet.apis import inference_detector
    from mmdet.utils import get_test_pipeline_cfg

    def predict(model, image_path):

        def checked(results):
            check_network_input(image_path, results['data_samples'].metainfo,
                                smallest_side)
            return results

        pipeline = Compose([*get_test_pipeline_cfg(model.cfg.copy()),
                            checked])
        return inference_detector(model, image_path, test_pipeline=pipeline)

    return predict


def segmentation_writer(palette, opacity: float):
    """Writes a segmentation over its picture as a PNG, painted a band of
    rows at a time (bounded memory, mmseg's colours and blending)."""

    def write(path, image, result):
        painted = paint_segmentation(image, result.pred_sem_seg.data,
                                     palette, opacity)
        written, encoded = cv2.imencode('.png', mmcv.rgb2bgr(painted))
        if not written:
            raise RunSetupError(f'{path}: could not encode the PNG')
        write_atomically(encoded.tobytes(), path)

    return write


def visualizer_writer(model, opacity: float, visualizer_class, **options):
    """Writes a prediction over its picture with the task library's
    visualizer (boxes and masks; class names on a segmentation)."""
    visualizer = visualizer_class(name='mmvim_image_demo', alpha=opacity)
    visualizer.dataset_meta = model.dataset_meta

    def write(path, image, result):
        visualizer.add_datasample(path.stem, image, data_sample=result,
                                  draw_gt=False, out_file=str(path),
                                  **options)

    return write


def make_painter(config, args):
    """The model, its predict function (picture path -> result), and the
    function that writes a result over its picture to a file."""
    model = load_model(config, args)
    side = smallest_input_side(config.model)
    if task_library(config) == 'mmdet':
        from mmdet.visualization import DetLocalVisualizer
        return model, detection_predictor(model, side), visualizer_writer(
            model, args.opacity, DetLocalVisualizer,
            pred_score_thr=args.score_thr)

    def predict(model, path):
        return predict_segmentation(model, path, side)

    palette = model.dataset_meta.get('palette')
    if args.class_names or palette is None:
        from mmseg.visualization import SegLocalVisualizer
        return model, predict, visualizer_writer(
            model, args.opacity, SegLocalVisualizer,
            with_labels=args.class_names)
    return model, predict, segmentation_writer(palette, args.opacity)


def read_picture(path: str):
    """The picture as an RGB array; a clear error for a file that is not a
    picture (OpenCV would fail later without naming it)."""
    try:
        image = mmcv.imread(path, channel_order='rgb')
    except cv2.error:  # decoded to nothing, then colour-converted
        image = None
    if image is None:
        raise RunSetupError(f'{path} cannot be decoded as a picture')
    return image


def main():
    args = parse_args()
    with user_errors(FileNotFoundError):
        paint(args)


def paint(args):
    """Checks the pictures and outputs, then predicts and paints each."""
    try:
        paths = output_paths(args.images, args.out, args.overwrite)
    except ValueError as error:
        raise RunSetupError(str(error)) from None
    missing = [image for image in args.images if not osp.isfile(image)]
    if missing:
        raise RunSetupError(f'no such picture: {", ".join(missing)}')
    empty = [image for image in args.images if osp.getsize(image) == 0]
    if empty:
        raise RunSetupError(f'empty (0-byte) picture: {", ".join(empty)}')

    check_checkpoint_loads(args.checkpoint, 'checkpoint')
    prepare_process()
    config = Config.fromfile(args.config)
    ops_backend_line(args.device)  # an ops backend that cannot run
    try:
        model, predict, write = make_painter(config, args)
    except ValueError as error:  # the config's scope, the checkpoint
        raise RunSetupError(str(error)) from None
    for image_path, out_path in zip(args.images, paths):
        image = read_picture(image_path)
        try:
            result = predict(model, image_path)
        except RunSetupError:
            raise
        except RuntimeError as error:
            height, width = image.shape[:2]
            raise RunSetupError(
                f'{image_path} ({width}x{height}) could not be predicted: '
                f'{error}') from None
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if args.overwrite and out_path.exists():
            # asked for; the tools' writes never replace files themselves
            out_path.unlink()
        write(out_path, image, result)
        print(f'{image_path} -> {out_path}')


if __name__ == '__main__':
    main()
