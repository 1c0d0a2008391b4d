"""Detection quickstart on CPU: toy COCO data, AP before and after training.

Generates the toy dataset (unless it is there), evaluates the freshly
initialised Vim Cascade Mask R-CNN of the quickstart config, trains it and
evaluates it again. Beside the checkpoint it writes a panel of the first
validation picture, input | ground-truth boxes and masks | predicted ones
(panel_<picture>.png), and the training curves (curves.png: loss and lr per
iteration, box and mask AP untrained and after training):

    python tools/demo/quickstart_det.py [--work-dir DIR] [--seed N] \\
        [--score-thr T]

The panel draws the predictions scored at least the threshold that matches
the validation objects best (best F1 over all validation pictures, a
prediction counting as a hit at box IoU >= 0.5 with an object of its class),
or at least --score-thr when given; its title says which.

The untrained model is initialised as the training run is (same config,
same seed), so the two box APs measure what training did.
"""
import argparse
import os.path as osp
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

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
        '--cpu-threads',
        type=int,
        default=1,
        help='torch threads when running on the CPU (default: %(default)s)')
    parser.add_argument(
        '--seed',
        type=int,
        help="seed of the initial weights and of the training's sampling "
        "(default: the config's, 0)")
    parser.add_argument(
        '--score-thr',
        type=float,
        help='lowest score of a drawn prediction (default: the one with the '
        'best F1 over the validation pictures)')
    return parser.parse_args()


def evaluate(runner) -> dict:
    """Box and mask AP of the runner's model on the toy val split."""
    metrics = runner.test()
    return {kind: metrics.get(f'coco/{kind}_mAP', 0.0)
            for kind in ('bbox', 'segm')}


def val_objects(data_root: str, classes) -> list:
    """(path, Instances) of each validation picture: its ground-truth
    boxes and masks."""
    import numpy as np
    from pycocotools.coco import COCO

    from mmvim.visualization import Instances
    coco = COCO(osp.join(data_root, VAL_ANNOTATIONS))
    names = {c['id']: c['name'] for c in coco.loadCats(coco.getCatIds())}
    pictures = []
    for image_info in coco.loadImgs(sorted(coco.getImgIds())):
        objects = coco.loadAnns(coco.getAnnIds(imgIds=image_info['id']))
        pictures.append((
            Path(data_root, 'val', image_info['file_name']),
            Instances(
                np.array([[x, y, x + w, y + h] for x, y, w, h in
                          (obj['bbox'] for obj in objects)],
                         np.float32).reshape(-1, 4),
                np.array([classes.index(names[obj['category_id']])
                          for obj in objects], np.int64),
                np.array([coco.annToMask(obj) for obj in objects],
                         bool).reshape(-1, image_info['height'],
                                       image_info['width']))))
    return pictures


def write_panel(config, checkpoint: str, data_root: str,
                score_thr: Optional[float] = None):
    """Runs the saved checkpoint on the validation pictures and draws the
    first one beside the checkpoint, with the predictions scored at least
    ``score_thr`` or, when it is None, at least the threshold with the best
    F1 over all validation pictures. Returns the panel's path and the
    threshold chosen (None when ``score_thr`` was given)."""
    import numpy as np
    from mmdet.apis import inference_detector, init_detector
    from PIL import Image

    from mmvim.visualization import (Instances, best_f1_threshold,
                                     detection_panel)
    model = init_detector(config, checkpoint, device='cpu')
    classes = list(model.dataset_meta['classes'])
    pictures = val_objects(data_root, classes)
    predictions = []
    for picture, _ in pictures:
        predicted = inference_detector(model,
                                       str(picture)).pred_instances.cpu()
        predictions.append(Instances(
            predicted.bboxes.numpy(), predicted.labels.numpy(),
            predicted.masks.numpy() if 'masks' in predicted else None,
            predicted.scores.numpy()))
    chosen = None
    if score_thr is None:
        chosen = best_f1_threshold(predictions,
                                   [truth for _, truth in pictures])
        score_thr = chosen.threshold
    picture, ground_truth = pictures[0]
    panel = detection_panel(
        np.array(Image.open(picture).convert('RGB')),
        ground_truth,
        predictions[0],
        classes,
        Path(checkpoint).parent / f'panel_{picture.stem}.png',
        score_thr=score_thr,
        score_source=None if chosen is None else 'best F1 on val',
        scale=4)
    return panel, chosen


def main() -> None:
    args = parse_args()
    # Imported here so that --help answers without loading torch and mmdet.
    import torch

    import mmvim  # noqa: F401  registers the backbone, neck and optimizer
    from mmvim.runtime import (RunSetupError, build_runner, load_config,
                               plan_checkpoints)
    from mmvim.visualization import load_scalars, plot_curves

    if not torch.cuda.is_available():
        # Small tensors: on a 2-core machine shared with other work, two
        # threads made a training iteration 3-14 s instead of 0.5-0.6 s.
        torch.set_num_threads(args.cpu_threads)
    if not osp.isdir(args.data_root):
        subprocess.run(
            [sys.executable, str(MAKE_TOY_COCO), args.data_root], check=True)
    data_root = args.data_root.rstrip('/') + '/'
    common_options = {
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

    if args.seed is not None:
        common_options['randomness.seed'] = args.seed

    def run_options(name):
        # Runners of one process need their own logger/message hub names
        # (build_runner unnames the visualizer for the same reason).
        return dict(common_options, experiment_name=name)

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
    panel, chosen = write_panel(trained_cfg, checkpoint, data_root,
                                args.score_thr)
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
    if chosen is None:
        drawn = f'score >= {args.score_thr:g}'
    else:
        drawn = (f'score >= {chosen.threshold:g}, the best F1 on val: '
                 f'{chosen.f1:.2f}, precision {chosen.precision:.2f}, '
                 f'recall {chosen.recall:.2f} at IoU 0.5')
    print(f'panel (input | ground truth | prediction, {drawn}): {panel}')
    print(f'training curves: {curves}')
    if after['bbox'] <= before['bbox']:
        sys.exit('error: training did not improve the box AP')


if __name__ == '__main__':
    main()
