"""Training curves from mmengine's scalar log (``vis_data/scalars.json``).

mmengine's ``LocalVisBackend`` writes one JSON object per line: a training
record (``lr``, ``loss``, ... at ``step`` = iteration) every logging
interval, and an evaluation record (the metrics, at ``step`` = iteration, or
epoch for epoch-based runs) after each validation. Every run of a work dir
logs into its own ``<timestamp>/`` folder; a resumed run goes on in a new
one, so the folders are read oldest first and a later record of the same
step replaces an earlier one.
"""
import json
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

# The headline metric of each task family, drawn unless others are asked for.
HEADLINE_METRICS = ('mIoU', 'coco/bbox_mAP', 'coco/segm_mAP')
NOT_METRICS = ('step', 'time', 'data_time', 'iter', 'epoch', 'memory')
# mmengine logs the schedule's lr (base_lr) and the first parameter group's,
# which layer-wise decay scales down.
LR_KEYS = {'base_lr': 'base_lr (schedule)', 'lr': 'lr (first param group)'}
DPI = 100


class Scalars(NamedTuple):
    """A work dir's records, sorted by step.

    eval_unit: what an evaluation's step counts, 'iteration' or 'epoch'.
    """
    train: List[Dict]
    evaluation: List[Dict]
    eval_unit: str


def find_scalar_logs(work_dir) -> List[Path]:
    """The ``scalars.json`` of each run in ``work_dir``, oldest first; a path
    to one ``scalars.json`` is returned as it is."""
    path = Path(work_dir)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f'{work_dir} does not exist')
    logs = sorted(path.glob('*/vis_data/scalars.json'))
    if not logs:
        raise FileNotFoundError(
            f'{work_dir} holds no <timestamp>/vis_data/scalars.json. Pass the '
            'work dir of an mmengine run whose visualizer has a '
            "LocalVisBackend (mmseg's and mmdet's default runtime has one), "
            'or the path of a scalars.json')
    return logs


def _is_training_record(record: Dict) -> bool:
    return 'lr' in record or any(key.startswith('loss') for key in record)


def load_scalars(work_dir) -> Scalars:
    """Reads and merges the scalar logs of every run in ``work_dir``.

    A run killed while writing may leave its last line cut short: that line
    is skipped. Any other line that is not a JSON record with a ``step`` is
    an error naming the file and line.
    """
    train, evaluation = {}, {}
    for log in find_scalar_logs(work_dir):
        lines = log.read_text().splitlines()
        last_train_step = 0
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                if number == len(lines):
                    continue
                raise ValueError(f'{log}, line {number} is not JSON '
                                 f'({error}); is it an mmengine '
                                 'scalars.json?') from error
            if not isinstance(record, dict) or 'step' not in record:
                raise ValueError(f'{log}, line {number} has no "step": '
                                 'not an mmengine scalar record')
            if _is_training_record(record):
                train[record['step']] = record
                last_train_step = record['step']
            else:
                evaluation.setdefault(log, []).append(
                    (last_train_step, record))
    by_epoch = any('epoch' in record for record in train.values())
    evaluation = _evaluation_by_step(evaluation, by_epoch)
    return Scalars([train[step] for step in sorted(train)],
                   [evaluation[step] for step in sorted(evaluation)],
                   'epoch' if by_epoch else 'iteration')


def _evaluation_by_step(evaluation: Dict, by_epoch: bool) -> Dict:
    """Evaluation records by step, a later run's replacing an earlier's.

    An iteration-based run whose LoggerHook keeps ``log_metric_by_epoch``
    at its default (True) logs every evaluation at step 0, its epoch; the
    evaluation then takes the step of the last training record before it
    (exact when the logging interval divides the evaluation interval).
    """
    by_step = {}
    for records in evaluation.values():
        for last_train_step, record in records:
            if not by_epoch and record['step'] < last_train_step:
                record = dict(record, step=last_train_step)
            by_step[record['step']] = record
    return by_step


def _series(records: List[Dict], key: str):
    points = [(r['step'], r[key]) for r in records
              if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def metric_names(scalars: Scalars) -> List[str]:
    """The headline metrics logged, else every numeric evaluation key."""
    logged = []
    for record in scalars.evaluation:
        logged += [
            key for key, value in record.items()
            if key not in NOT_METRICS and isinstance(value, (int, float))
            and key not in logged
        ]
    headline = [name for name in HEADLINE_METRICS if name in logged]
    return headline or logged


def plot_curves(scalars: Scalars,
                out_file,
                metrics: Optional[Sequence[str]] = None,
                title: Optional[str] = None,
                overwrite: bool = False) -> List[str]:
    """Draws loss and learning rates against iteration and the metrics at
    each evaluation, side by side, into a PNG. Returns the names drawn.

    ``metrics`` defaults to :func:`metric_names`; a name that was never
    logged is an error listing those that were.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_file = Path(out_file)
    if out_file.exists() and not overwrite:
        raise FileExistsError(f'{out_file} already exists; choose another '
                              'path or pass overwrite=True to replace it')
    if not scalars.train:
        raise ValueError('the log has no training record (no lr or loss): '
                         'nothing to draw')
    available = metric_names(scalars) if metrics is None else list(metrics)
    logged = {key for record in scalars.evaluation for key in record}
    unknown = [name for name in available if name not in logged]
    if unknown:
        raise ValueError(f'metrics {unknown} were never logged; the log has '
                         f'{sorted(logged - set(NOT_METRICS))}')

    fig = Figure(figsize=(15, 4.5), dpi=DPI)
    FigureCanvasAgg(fig)
    loss_axes, lr_axes, metric_axes = fig.subplots(1, 3)
    drawn = []
    for axes, heading, keys in ((loss_axes, 'loss', ('loss', )),
                                (lr_axes, 'learning rate', LR_KEYS)):
        for key in keys:
            steps, values = _series(scalars.train, key)
            if steps:
                axes.plot(steps, values, linewidth=1.5,
                          label=LR_KEYS.get(key))
                drawn.append(key)
        axes.set_title(heading if set(keys) & set(drawn) else
                       f'{heading}: not logged')
        axes.set_xlabel('iteration')
        axes.grid(alpha=0.3)
    if len(set(LR_KEYS) & set(drawn)) > 1:
        lr_axes.legend()
    lr_axes.ticklabel_format(axis='y', style='sci', scilimits=(-2, 3))
    series = {name: _series(scalars.evaluation, name) for name in available}
    # Each evaluation's highest value is written above its point, the
    # others below theirs, so close values (box and mask AP) stay readable.
    highest = {}
    for steps, values in series.values():
        for step, value in zip(steps, values):
            highest[step] = max(value, highest.get(step, value))
    for name, (steps, values) in series.items():
        metric_axes.plot(steps, values, marker='o', label=name)
        for step, value in zip(steps, values):
            above = value >= highest[step]
            metric_axes.annotate(
                f'{value:.3g}', (step, value),
                textcoords='offset points',
                xytext=(0, 6 if above else -6),
                ha='center',
                va='bottom' if above else 'top',
                fontsize=9)
        drawn.append(name)
    if available:
        metric_axes.margins(y=0.15)  # room for the values written by them
        metric_axes.legend()
        metric_axes.set_title('evaluation')
    else:
        metric_axes.set_title('no evaluation logged')
    metric_axes.set_xlabel(scalars.eval_unit)
    metric_axes.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=DPI)
    return drawn
