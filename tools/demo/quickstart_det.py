"""Detection quickstart on CPU: toy COCO data, AP before and after training.

Generates the toy dataset (unless it is there), evaluates the freshly
initialised Vim Cascade Mask R-CNN of the quickstart config, trains it and
evaluates it again. Beside the checkpoint it writes a panel of the first
validation picture, input | ground-truth boxes and masks | predicted ones
scored at least --score-thr (panel_<picture>.png), and the training curves
(curves.png: loss and lr per iteration, box and mask AP untrained and after
training):

    python tools/demo/quickstart_det.py [--work-dir DIR] [--score-thr 0.1]

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
VAL_ANNOTATIONS = 'annotations/instances_val.json'


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
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.1,
        help='lowest score of a drawn prediction (default: %(default)s: '
        'after a few CPU minutes from scratch the scores stay near 0.1)')
    return parser.parse_args()


def evaluate(runner) -> dict:
    """Box and mask AP of the runner's model on the toy val split."""
    metrics = runner.test()
    return {kind: metrics.get(f'coco/{kind}_mAP', 0.0)
            for kind in ('bbox', 'segm')}


def write_panel(config, checkpoint: str, data_root: str, score_thr: float):
    """Runs the saved checkpoint on the first validation picture and writes
    its panel beside the checkpoint; returns the panel's path."""
    import numpy as np
    from mmdet.apis import inference_detector, init_detector
    from PIL import Image
    from pycocotools.coco import COCO

    from mmvim.visualization import Instances, detection_panel
    model = init_detector(config, checkpoint, device='cpu')
    classes = list(model.dataset_meta['classes'])
    coco = COCO(osp.join(data_root, VAL_ANNOTATIONS))
    image_info = coco.loadImgs(min(coco.getImgIds()))[0]
    picture = Path(data_root, 'val', image_info['file_name'])
    objects = coco.loadAnns(coco.getAnnIds(imgIds=image_info['id']))
    names = {c['id']: c['name'] for c in coco.loadCats(coco.getCatIds())}
    ground_truth = Instances(
        np.array([[x, y, x + w, y + h] for x, y, w, h in
                  (obj['bbox'] for obj in objects)],
                 np.float32).reshape(-1, 4),
        np.array([classes.index(names[obj['category_id']])
                  for obj in objects], np.int64),
        np.array([coco.annToMask(obj) for obj in objects], bool).reshape(
            -1, image_info['height'], image_info['width']))
    predicted = inference_detector(model, str(picture)).pred_instances.cpu()
    prediction = Instances(
        predicted.bboxes.numpy(), predicted.labels.numpy(),
        predicted.masks.numpy() if 'masks' in predicted else None,
        predicted.scores.numpy())
    return detection_panel(
        np.array(Image.open(picture).convert('RGB')),
        ground_truth,
        prediction,
        classes,
        Path(checkpoint).parent / f'panel_{picture.stem}.png',
        score_thr=score_thr,
        scale=4)


def main() -> None:
    args = parse_args()
    # Imported here so that --help answers without loading torch and mmdet.
    import mmvim  # noqa: F401  registers the backbone, neck and optimizer
    from mmvim.runtime import (RunSetupError, build_runner, load_config,
                               plan_checkpoints)
    from mmvim.visualization import load_scalars, plot_curves

    if not osp.isdir(args.data_root):
        subprocess.run(
            [sys.executable, str(MAKE_TOY_COCO), args.data_root], check=True)
    data_root = args.data_root.rstrip('/') + '/'
    data_options = {
        'train_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.data_root': data_root,
        'val_evaluator.ann_file': data_root + VAL_ANNOTATIONS,
        'test_evaluator.ann_file': data_root + VAL_ANNOTATIONS,
    }
    try:
        plan_checkpoints(
            load_config(str(CONFIG), work_dir=args.work_dir), resume=None)
    except RunSetupError as error:
        sys.exit(f'error: {error}')

    def run_options(name):
        # Runners of one process need their own logger/message hub names
        # (build_runner unnames the visualizer for the same reason).
        return dict(data_options, experiment_name=name)

    untrained = build_runner(
        load_config(str(CONFIG), run_options('quickstart_untrained'),
                    work_dir=osp.join(args.work_dir, 'untrained')))
    # Runner.test() does not initialise weights (train() does): do it the
    # way training will, from the same seed.
    untrained.model.init_weights()
    before = evaluate(untrained)

    trained_cfg = load_config(
        str(CONFIG), run_options('quickstart_trained'),
        work_dir=args.work_dir)
    runner = build_runner(trained_cfg)
    runner.train()
    after = evaluate(runner)

    checkpoint = Path(args.work_dir, 'last_checkpoint').read_text().strip()
    panel = write_panel(trained_cfg, checkpoint, data_root, args.score_thr)
    # The untrained figures come from their own runner: put them at
    # iteration 0 of the curves, before the training run's evaluation.
    scalars = load_scalars(args.work_dir)
    untrained = dict(step=0, **{f'coco/{kind}_mAP': value
                                for kind, value in before.items()})
    curves = Path(args.work_dir, 'curves.png')
    plot_curves(
        scalars._replace(evaluation=[untrained, *scalars.evaluation]),
        curves,
        title=f'Cascade Mask R-CNN + Vim, toy COCO ({args.work_dir})')

    print(f'\nbox AP  untrained {before["bbox"]:.3f} -> trained '
          f'{after["bbox"]:.3f}')
    print(f'mask AP untrained {before["segm"]:.3f} -> trained '
          f'{after["segm"]:.3f}')
    print(f'checkpoint: {checkpoint}')
    print(f'panel (input | ground truth | prediction, score >= '
          f'{args.score_thr:g}): {panel}')
    print(f'training curves: {curves}')
    if after['bbox'] <= before['bbox']:
        sys.exit('error: training did not improve the box AP')


if __name__ == '__main__':
    main()
