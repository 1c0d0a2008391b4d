"""Training curves from synthetic mmengine scalar logs."""
import json

import numpy as np
import pytest
from PIL import Image

from mmvim.visualization import (find_scalar_logs, load_scalars,
                                 plot_curves)
from mmvim.visualization.curves import metric_names


def write_run(work_dir, timestamp, records, tail=''):
    log = work_dir / timestamp / 'vis_data' / 'scalars.json'
    log.parent.mkdir(parents=True)
    log.write_text(''.join(json.dumps(r) + '\n' for r in records) + tail)
    return log


def train_record(step, loss):
    return dict(base_lr=1e-3 * step / 40, lr=1e-4 * step / 40, loss=loss,
                time=0.5, iter=step, memory=100, step=step)


def segmentation_run(work_dir):
    """A run evaluated before training and at iteration 20, then resumed
    from iteration 20 in a second run (a new timestamp folder) that
    re-logs iteration 30 and was killed while writing its last line."""
    first = [dict(mIoU=3.1, aAcc=20.0, data_time=0.1, time=0.2, step=0)]
    first += [train_record(step, 2.0 - step / 40) for step in (10, 20)]
    first += [dict(mIoU=50.0, aAcc=70.0, data_time=0.1, time=0.2, step=20)]
    first += [train_record(30, 2.0 - 30 / 40)]
    second = [train_record(step, 1.0 - step / 100) for step in (30, 40)]
    second += [dict(mIoU=90.9, aAcc=95.0, data_time=0.1, time=0.2, step=40)]
    write_run(work_dir, '20240101_000000', first)
    write_run(work_dir, '20240101_010000', second, tail='{"lr": 0.1, "lo')


def test_runs_merge_oldest_first_and_later_steps_win(tmp_path):
    segmentation_run(tmp_path)
    (tmp_path / 'untrained' / 'x' / 'vis_data').mkdir(parents=True)
    assert [p.parts[-3] for p in find_scalar_logs(tmp_path)] == [
        '20240101_000000', '20240101_010000']
    scalars = load_scalars(tmp_path)
    assert [r['step'] for r in scalars.train] == [10, 20, 30, 40]
    assert scalars.train[2]['loss'] == pytest.approx(0.7)  # the resumed run
    assert [(r['step'], r['mIoU']) for r in scalars.evaluation] == [
        (0, 3.1), (20, 50.0), (40, 90.9)]
    assert scalars.eval_unit == 'iteration'
    assert metric_names(scalars) == ['mIoU']


def test_evaluations_logged_at_epoch_0_of_an_iteration_run(tmp_path):
    # LoggerHook(log_metric_by_epoch=True), its default, with an
    # IterBasedTrainLoop: every evaluation is logged at step 0.
    records = [dict(mIoU=3.1, step=0)]
    records += [train_record(step, 1.0) for step in (10, 20)]
    records += [dict(mIoU=90.9, step=0)]
    write_run(tmp_path, '20240101_000000', records)
    scalars = load_scalars(tmp_path)
    assert [(r['step'], r['mIoU']) for r in scalars.evaluation] == [
        (0, 3.1), (20, 90.9)]


def test_epoch_runs_and_detection_metrics(tmp_path):
    records = [dict(train_record(step, 1.0), epoch=1) for step in (5, 10)]
    records.append({'coco/bbox_mAP': 0.04, 'coco/bbox_mAP_50': 0.13,
                    'coco/segm_mAP': 0.03, 'step': 1})
    write_run(tmp_path, '20240101_000000', records)
    scalars = load_scalars(tmp_path)
    assert scalars.eval_unit == 'epoch'
    assert metric_names(scalars) == ['coco/bbox_mAP', 'coco/segm_mAP']


def test_bad_logs_are_errors_that_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match='no <timestamp>/vis_data'):
        find_scalar_logs(tmp_path)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        find_scalar_logs(tmp_path / 'nowhere')
    log = write_run(tmp_path, 'a', [], tail='not json\n{"step": 1}\n')
    with pytest.raises(ValueError, match='line 1 is not JSON'):
        load_scalars(tmp_path)
    log.write_text('{"loss": 1.0}\n')
    with pytest.raises(ValueError, match='no "step"'):
        load_scalars(log)


def test_plot_draws_loss_lr_and_metric_panels(tmp_path):
    segmentation_run(tmp_path)
    out = tmp_path / 'curves.png'
    drawn = plot_curves(load_scalars(tmp_path), out, title='toy')
    assert drawn == ['loss', 'base_lr', 'lr', 'mIoU']
    pixels = np.array(Image.open(out).convert('RGB')).astype(int)
    assert pixels.shape == (450, 1500, 3)
    # Each third of the figure holds a drawn curve: pixels of matplotlib's
    # first line colour (C0, #1f77b4) in all three panels.
    line = (np.abs(pixels - [31, 119, 180]).sum(-1) < 30)
    thirds = np.array_split(line, 3, axis=1)
    assert all(third.sum() > 100 for third in thirds)
    # The title given, and only it, is written above the panels: without
    # one the top of the figure differs.
    plot_curves(load_scalars(tmp_path), tmp_path / 'untitled.png')
    untitled = np.array(Image.open(tmp_path / 'untitled.png').convert('RGB'))
    assert not np.array_equal(pixels[:40], untitled[:40])
    with pytest.raises(FileExistsError):
        plot_curves(load_scalars(tmp_path), out)
    with pytest.raises(ValueError, match="never logged; the log has"):
        plot_curves(load_scalars(tmp_path), tmp_path / 'b.png',
                    metrics=['coco/bbox_mAP'])
