"""The `make demo` quickstart: UperNet + Vim trained on toy data, on CPU.

Writes the toy ADE20K-layout dataset (first run only), measures the mIoU of
the freshly initialised model, trains it with mmengine's Runner (its log
lines show progress and time left), measures the mIoU again, paints one
validation picture's prediction and prints both figures. Each run gets its
own timestamped work dir, so earlier runs' checkpoints are never replaced.

    python tools/demo/quickstart.py [--max-iters N] [--work-dir DIR]
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch
from mmengine.hooks import Hook

from mmvim.engine import (RunSetupError, build_runner, check_checkpoints_kept,
                          load_config)

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs/ade20k/quickstart_upernet_vim_tiny_toy.py'
TOY_GENERATOR = REPO / 'tools/dataset_converters/make_toy_ade20k.py'
IMAGE_DEMO = REPO / 'tools/demo/image_demo.py'
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
    return parser.parse_args()


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
        check_checkpoints_kept(work_dir, resume=None)
    except RunSetupError as error:
        sys.exit(f'error: {error}')
    runner = build_runner(cfg)
    record = MIoUBeforeAndAfter()
    runner.register_hook(record)
    runner.train()

    checkpoint = Path(work_dir) / f'iter_{cfg.train_cfg.max_iters}.pth'
    picture = sorted((data_root / 'images' / 'validation').glob('*.jpg'))[0]
    prediction = Path(work_dir) / 'prediction.png'
    subprocess.run([
        sys.executable,
        str(IMAGE_DEMO),
        str(CONFIG),
        str(checkpoint),
        str(picture), '--out',
        str(prediction)
    ],
                   check=True)

    before, after = record.miou_by_iter[0], record.miou_by_iter[
        cfg.train_cfg.max_iters]
    print('\nQuickstart finished')
    print(f'  mIoU before training: {before:.2f}')
    print(f'  mIoU after {cfg.train_cfg.max_iters} iterations: {after:.2f}')
    print(f'  checkpoint: {checkpoint}')
    print(f'  prediction: {prediction} (validation picture {picture.name})')


if __name__ == '__main__':
    main()
