"""The files and tables of a speed / memory benchmark run: results.csv and
results.json (with the run's metadata) in a directory no earlier run wrote
to, the rounds of a measurement combined, ratios against a baseline model
(ratios.csv), and fixed-width tables."""
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
from typing import Dict, List, Optional, Sequence

import torch

from mmvim.ops.cpu_info import cpu_model_name

COLUMNS = ('model', 'implementation', 'backend', 'device', 'resolution',
           'batch_size', 'dtype', 'mode', 'status', 'images_per_s',
           'median_s', 'min_s', 'peak_memory_mb', 'working_memory_mb',
           'allocated_memory_mb', 'memory_kind', 'threads', 'warmup',
           'repeats', 'round', 'note')
RATIO_COLUMNS = ('model', 'baseline', 'resolution', 'batch_size', 'dtype',
                 'mode', 'speedup', 'speedup_min', 'speedup_max', 'rounds',
                 'peak_memory_ratio', 'working_memory_ratio',
                 'allocated_memory_ratio')
MEMORY_COLUMNS = ('peak_memory_mb', 'working_memory_mb', 'allocated_memory_mb')


def series_key(row: Dict) -> tuple:
    """The curve a row belongs to: (model, batch_size, dtype, mode)."""
    return (row['model'], row['batch_size'], row['dtype'], row['mode'])


def new_output_dir(out: Optional[str], out_dir: str) -> str:
    """``out`` (which must not exist yet), else a new timestamped directory
    under ``out_dir``: never one an earlier run wrote to."""
    if out:
        os.makedirs(out)  # raises if it exists: never overwrite
        return out
    stamp = datetime.datetime.now().strftime('%Y%m%d_%H%M%S')
    for suffix in [''] + [f'_{n}' for n in range(1, 100)]:
        path = os.path.join(out_dir, stamp + suffix)
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f'No free output directory for {stamp} in {out_dir}: '
                       'pass a new one with --out.')


def write_csv(path: str, rows: List[Dict], columns: Sequence[str]) -> None:
    with open(path, 'w', newline='') as file:
        writer = csv.DictWriter(file, columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)


def write_results(results: List[Dict], out_dir: str, meta: Dict) -> None:
    """results.csv (the COLUMNS) and results.json (every field, and
    ``meta``), rewritten whole after each measurement."""
    write_csv(os.path.join(out_dir, 'results.csv'), results, COLUMNS)
    with open(os.path.join(out_dir, 'results.json'), 'w') as file:
        json.dump(dict(meta=meta, results=results), file, indent=1)


def run_metadata(command: List[str], device: str) -> Dict:
    """What a reader needs to trust or reproduce the numbers."""
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                                capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = 'unknown'
    if device == 'cuda':
        device_name = torch.cuda.get_device_name()
    else:
        device_name = (cpu_model_name() or platform.processor()
                       or platform.machine())
    return dict(command=' '.join(command),
                date=datetime.datetime.now().isoformat(timespec='seconds'),
                torch=torch.__version__, device=device,
                device_name=device_name, cpu_count=os.cpu_count(),
                git_commit=commit)


def _setting_key(row: Dict) -> tuple:
    """What the models compared at one setting share: resolution, batch
    size, dtype and mode."""
    return (row['resolution'], ) + series_key(row)[1:]


def _measurement_key(row: Dict) -> tuple:
    """What the rounds of one measurement share: model and setting."""
    return (row['model'], ) + _setting_key(row)


def _combined(rows: List[Dict]) -> Dict:
    """The rounds of one measurement as one row: the median of the rounds'
    median step times (and images/s from it), the rounds' least and
    greatest images/s, the fastest step, and the largest of each memory
    figure (a peak is the highest seen). A round that failed makes the
    measurement its failure."""
    failed = [row for row in rows if row['status'] != 'ok']
    combined = {key: value for key, value in (failed or rows)[0].items()
                if key not in ('round', 'times_s', 'warmup_times_s')}
    combined['rounds'] = len(rows)
    if failed:
        return combined
    median_s = statistics.median(row['median_s'] for row in rows)
    combined.update(median_s=median_s,
                    images_per_s=rows[0]['batch_size'] / median_s,
                    images_per_s_min=min(row['images_per_s'] for row in rows),
                    images_per_s_max=max(row['images_per_s'] for row in rows),
                    min_s=min(row['min_s'] for row in rows))
    for column in MEMORY_COLUMNS:
        values = [row.get(column) for row in rows]
        combined[column] = None if None in values else max(values)
    return combined


def combine_rounds(results: List[Dict]) -> List[Dict]:
    """One row per measurement, in the order of their first rounds: a
    measurement run once (or a row of a run from before rounds) as it is,
    one of several rounds (``--rounds``) combined by :func:`_combined`."""
    groups = {}
    for row in results:
        groups.setdefault(_measurement_key(row), []).append(row)
    return [
        rows[0] if len(rows) == 1 else _combined(rows)
        for rows in groups.values()
    ]


def _round_speedups(results: List[Dict], baseline: str) -> Dict:
    """Each model's speedups over the baseline, one per round in which both
    ran ok, keyed by measurement: the ratio of a round's two measurements,
    taken back to back, not of medians over the whole run, so that a shared
    machine's slow and fast phases cancel out of it."""
    base_speed = {(_setting_key(row), row.get('round', 0)):
                  row['images_per_s']
                  for row in results
                  if row['model'] == baseline and row['status'] == 'ok'}
    speedups = {}
    for row in results:
        base = base_speed.get((_setting_key(row), row.get('round', 0)))
        if row['model'] != baseline and row['status'] == 'ok' and base:
            speedups.setdefault(_measurement_key(row),
                                []).append(row['images_per_s'] / base)
    return speedups


def _ratio(row: Dict, base: Dict, column: str) -> Optional[float]:
    """row's ``column`` over base's; None where either lacks it (rows of
    older runs) or the base's is 0."""
    value, reference = row.get(column), base.get(column)
    if value is None or not reference:
        return None
    return value / reference


def ratio_rows(results: List[Dict], baseline: str) -> List[Dict]:
    """Each ok measurement against the baseline's at the same resolution,
    batch size, dtype and mode: speedup (>1 = faster; over several rounds
    the median of the rounds' speedups, with their least and greatest) and
    memory ratios (<1 = leaner) of the combined rounds."""
    combined = combine_rounds(results)
    speedups = _round_speedups(results, baseline)
    reference = {_setting_key(row): row
                 for row in combined
                 if row['model'] == baseline and row['status'] == 'ok'}
    rows = []
    for row in combined:
        base = reference.get(_setting_key(row))
        measured = speedups.get(_measurement_key(row))
        if row['model'] == baseline or row['status'] != 'ok' or not base \
                or not measured:
            continue
        rows.append(
            dict(model=row['model'], baseline=baseline,
                 resolution=row['resolution'], batch_size=row['batch_size'],
                 dtype=row['dtype'], mode=row['mode'],
                 speedup=statistics.median(measured),
                 speedup_min=min(measured), speedup_max=max(measured),
                 rounds=len(measured),
                 peak_memory_ratio=row['peak_memory_mb'] /
                 base['peak_memory_mb'],
                 working_memory_ratio=_ratio(row, base, 'working_memory_mb'),
                 allocated_memory_ratio=_ratio(row, base,
                                               'allocated_memory_mb')))
    return rows


def format_table(rows: List[Dict], columns: Sequence[str]) -> str:
    """A plain fixed-width table (numbers to 3 significant digits)."""

    def cell(value):
        if isinstance(value, float):
            return f'{value:.3g}'
        return '' if value is None else str(value)

    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column)] + [len(line[i]) for line in cells])
        for i, column in enumerate(columns)
    ]
    lines = [columns] + cells
    return '\n'.join('  '.join(text.ljust(width)
                               for text, width in zip(line, widths))
                     for line in lines)


def report(results: List[Dict], baseline: Optional[str],
           out_dir: Optional[str]) -> None:
    """Print the results, rounds combined (and the ratios to the baseline;
    saved too as ratios.csv when ``out_dir`` is given)."""
    combined = combine_rounds(results)
    rounds = ('rounds', ) if any('rounds' in row for row in combined) else ()
    print(format_table(combined, ('model', 'resolution', 'batch_size',
                                  'dtype', 'mode', 'status', 'images_per_s',
                                  'median_s', 'peak_memory_mb',
                                  'working_memory_mb', 'allocated_memory_mb')
                       + rounds))
    implementations = {row['model']: row['implementation']
                       for row in results if row.get('implementation')}
    for model, implementation in implementations.items():
        print(f'{model}: {implementation}')
    if not baseline:
        return
    ratios = ratio_rows(results, baseline)
    print(f'\nAgainst {baseline} (speedup > 1: faster; memory ratio < 1: '
          'leaner):')
    columns = [column for column in RATIO_COLUMNS if column != 'baseline']
    if not rounds:
        columns = [column for column in columns
                   if column not in ('speedup_min', 'speedup_max', 'rounds')]
    print(format_table(ratios, columns))
    if out_dir:
        write_csv(os.path.join(out_dir, 'ratios.csv'), ratios,
                  RATIO_COLUMNS)
