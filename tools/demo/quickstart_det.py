"""Detection quickstart on CPU: toy COCO data, AP before and after training.

Generates the toy dataset (unless it is there), evaluates the freshly
initialised Vim Cascade Mask R-CNN of the quickstart config, trains it,
evaluates it again and paints its predictions on a validation picture:

    python tools/demo/quickstart_det.py [--work-dir DIR]

The untrained model is initialised as the training run is (same config,
same seed), so the two box APs measure what training did.
"""
import argparse
import os.path as osp
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs/coco/quickstart_cascade_mask_rcnn_vim_tiny_toy.py'
MAKE_TOY_COCO = REPO / 'tools/dataset_converters/make_toy_coco.py'
IMAGE_DEMO = REPO / 'tools/demo/image_demo.py'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--work-dir',
        default=osp.join('work_dirs', 'quickstart_det',
                         time.strftime('%Y%m%d_%H%M%S')),
        help='logs, checkpoint and picture (default: a new '
        'work_dirs/quickstart_det/<date>_<time>); must not hold checkpoints '
        'of an earlier run')
    parser.add_argument(
        '--data-root',
        default='data/toy_coco',
        help='toy dataset, generated here when missing (default: %(default)s)')
    return parser.parse_args()


def evaluate(runner) -> dict:
    """Box and mask AP of the runner's model on the toy val split."""
    metrics = runner.test()
    return {kind: metrics.get(f'coco/{kind}_mAP', 0.0)
            for kind in ('bbox', 'segm')}


def main() -> None:
    args = parse_args()
    # Imported here so that --help answers without loading torch and mmdet.
    import mmvim  # noqa: F401  registers the backbone, neck and optimizer
    from mmvim.engine import (RunSetupError, build_runner,
                              check_checkpoints_kept, load_config)

    if not osp.isdir(args.data_root):
        subprocess.run(
            [sys.executable, str(MAKE_TOY_COCO), args.data_root], check=True)
    data_root = args.data_root.rstrip('/') + '/'
    data_options = {
        'train_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.data_root': data_root,
        'val_evaluator.ann_file':
        data_root + 'annotations/instances_val.json',
        'test_evaluator.ann_file':
        data_root + 'annotations/instances_val.json',
    }
    try:
        check_checkpoints_kept(args.work_dir, resume=None)
    except RunSetupError as error:
        sys.exit(f'error: {error}')

    # Runners of one process need their own logger/message hub names.
    untrained = build_runner(
        load_config(str(CONFIG), dict(data_options,
                                      experiment_name='quickstart_untrained'),
                    work_dir=osp.join(args.work_dir, 'untrained')))
    # Runner.test() does not initialise weights (train() does): do it the
    # way training will, from the same seed.
    untrained.model.init_weights()
    before = evaluate(untrained)

    runner = build_runner(
        load_config(str(CONFIG), dict(data_options,
                                      experiment_name='quickstart_trained'),
                    work_dir=args.work_dir))
    runner.train()
    after = evaluate(runner)

    checkpoint = Path(args.work_dir, 'last_checkpoint').read_text().strip()
    picture = osp.join(args.work_dir, 'prediction.png')
    first_val_image = sorted(Path(data_root, 'val').glob('*.png'))[0]
    # After a few CPU minutes from scratch the scores stay near 0.1, below
    # the demo's default threshold of 0.3: draw from 0.1.
    subprocess.run([
        sys.executable,
        str(IMAGE_DEMO),
        str(CONFIG), checkpoint,
        str(first_val_image), '--out', picture, '--overwrite', '--device',
        'cpu', '--score-thr', '0.1'
    ], check=True)

    print(f'\nbox AP  untrained {before["bbox"]:.3f} -> trained '
          f'{after["bbox"]:.3f}')
    print(f'mask AP untrained {before["segm"]:.3f} -> trained '
          f'{after["segm"]:.3f}')
    print(f'checkpoint: {checkpoint}\nprediction picture: {picture}')
    if after['bbox'] <= before['bbox']:
        sys.exit('error: training did not improve the box AP')


if __name__ == '__main__':
    main()
