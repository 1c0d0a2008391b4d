"""The `make demo` quickstart: UperNet + Vim trained on toy data, on CPU.

Writes the toy ADE20K-layout dataset (first run only), measures the mIoU of
the freshly initialised model, trains it with mmengine's Runner (its log
lines show progress and time left), measures the mIoU again and prints both
figures. Beside the checkpoint it writes, for the first validation pictures,
a panel input | ground truth | prediction (panel_<picture>.png) and the
training curves (curves.png: loss and lr per iteration, mIoU per
evaluation). Each run gets its own timestamped work dir, so earlier runs'
checkpoints are never replaced.

    python tools/demo/quickstart.py [--max-iters N] [--work-dir DIR] \\
        [--panels N]
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from mmengine.hooks import Hook
from PIL import Image

from mmvim.runtime import (RunSetupError, build_runner, load_config,
                           plan_checkpoints)
from mmvim.visualization import load_scalars, plot_curves, segmentation_panel

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs/ade20k/quickstart_upernet_vim_tiny_toy.py'
TOY_GENERATOR = REPO / 'tools/dataset_converters/make_toy_ade20k.py'
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class MIoUBeforeAndAfter(Hook):
    """Validates once before the first iteration, so the untrained figure
    comes from the very weights training starts from, and records the mIoU
    of every validation."""

    priority = 'LOW'

    def __init__(self):
        self.miou_by_iter = {}

    def before_train(self, runner):
        runner.val_loop.run()

    def after_val_epoch(self, runner, metrics=None):
        self.miou_by_iter[runner.iter] = metrics['mIoU']


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--data-root',
        default='data/toy_ade20k',
        help='toy dataset folder, written if absent (default: %(default)s)')
    parser.add_argument(
        '--work-dir',
        help='default: work_dirs/quickstart/<date>_<time>')
    parser.add_argument(
        '--max-iters',
        type=int,
        help="training iterations (default: the config's)")
    parser.add_argument(
        '--cpu-threads',
        type=int,
        default=1,
        help='torch threads when training on the CPU (default: %(default)s; '
        'the data-loading worker takes another core)')
    parser.add_argument(
        '--panels',
        type=int,
        default=3,
        help='validation pictures drawn as input | ground truth | '
        'prediction panels (default: %(default)s)')
    return parser.parse_args()


def ground_truth_labels(label_file: Path, ignore_index: int = 255):
    """A toy annotation as the model is trained on it: ADE20K's
    ``reduce_zero_label`` makes 0 (unlabelled) ``ignore_index`` and class k
    label k - 1."""
    labels = np.array(Image.open(label_file)).astype(np.int64) - 1
    labels[labels < 0] = ignore_index
    return labels


def write_panels(cfg, checkpoint: Path, data_root: Path, count: int):
    """Runs the saved checkpoint on the first ``count`` validation pictures
    and writes each one's panel beside it; returns the panel paths."""
    from mmseg.apis import inference_model, init_model
    model = init_model(cfg, str(checkpoint), device='cpu')
    meta = model.dataset_meta  # the classes and palette saved in training
    pictures = sorted((data_root / 'images' / 'validation').glob('*.jpg'))
    panels = []
    for picture in pictures[:count]:
        labels = data_root / 'annotations' / 'validation' / (
            picture.stem + '.png')
        prediction = inference_model(model, str(picture)).pred_sem_seg
        panels.append(
            segmentation_panel(
                np.array(Image.open(picture).convert('RGB')),
                ground_truth_labels(labels),
                prediction.data[0].cpu().numpy(),
                meta['classes'],
                meta['palette'],
                checkpoint.parent / f'panel_{picture.stem}.png',
                scale=4))
    return panels


def main():
    args = parse_args()
    if not torch.cuda.is_available():
        # The demo's tensors are small and the data-loading worker takes
        # the second core: on a shared 2-core machine two threads made an
        # iteration of an earlier, smaller demo model 4-6 s instead of 0.8 s.
        torch.set_num_threads(args.cpu_threads)
    data_root = Path(args.data_root)
    if not (data_root / 'images').is_dir():
        subprocess.run([sys.executable, str(TOY_GENERATOR), str(data_root)],
                       check=True)

    options = {f'{key}.dataset.data_root': str(data_root)
               for key in DATALOADERS}
    if args.max_iters:
        options.update({
            'train_cfg.max_iters': args.max_iters,
            'train_cfg.val_interval': args.max_iters,
            'default_hooks.checkpoint.interval': args.max_iters,
        })
    work_dir = args.work_dir or str(
        Path('work_dirs/quickstart') / time.strftime('%Y%m%d_%H%M%S'))
    cfg = load_config(str(CONFIG), options, work_dir=work_dir)
    if args.max_iters:  # the poly decay ends with training
        cfg.param_scheduler[-1].end = args.max_iters

    try:
        plan_checkpoints(cfg, resume=None)
    except RunSetupError as error:
        sys.exit(f'error: {error}')
    runner = build_runner(cfg)
    record = MIoUBeforeAndAfter()
    runner.register_hook(record)
    runner.train()

    checkpoint = Path(work_dir) / f'iter_{cfg.train_cfg.max_iters}.pth'
    panels = write_panels(cfg, checkpoint, data_root, args.panels)
    curves = Path(work_dir) / 'curves.png'
    plot_curves(
        load_scalars(work_dir),
        curves,
        title=f'UperNet + Vim-Ti, toy ADE20K ({work_dir})')

    before, after = record.miou_by_iter[0], record.miou_by_iter[
        cfg.train_cfg.max_iters]
    print('\nQuickstart finished')
    print(f'  mIoU before training: {before:.2f}')
    print(f'  mIoU after {cfg.train_cfg.max_iters} iterations: {after:.2f}')
    print(f'  checkpoint: {checkpoint}')
    print(f'  panels (input | ground truth | prediction): '
          f'{", ".join(map(str, panels))}')
    print(f'  training curves: {curves}')


if __name__ == '__main__':
    main()
