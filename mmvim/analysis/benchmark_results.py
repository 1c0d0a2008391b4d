"""The files and tables of a speed / memory benchmark run: results.csv and
results.json (with the run's metadata) in a directory no earlier run wrote
to, ratios against a baseline model (ratios.csv), and fixed-width tables."""
import csv
import datetime
import json
import os
import platform
import subprocess
from typing import Dict, List, Optional, Sequence

import torch

from mmvim.ops.cpu_info import cpu_model_name

COLUMNS = ('model', 'implementation', 'backend', 'device', 'resolution',
           'batch_size', 'dtype', 'mode', 'status', 'images_per_s',
           'median_s', 'min_s', 'peak_memory_mb', 'working_memory_mb',
           'allocated_memory_mb', 'memory_kind', 'threads', 'warmup',
           'repeats', 'note')
RATIO_COLUMNS = ('model', 'baseline', 'resolution', 'batch_size', 'dtype',
                 'mode', 'speedup', 'peak_memory_ratio',
                 'working_memory_ratio', 'allocated_memory_ratio')


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


def _ratio(row: Dict, base: Dict, column: str) -> Optional[float]:
    """row's ``column`` over base's; None where either lacks it (rows of
    older runs) or the base's is 0."""
    value, reference = row.get(column), base.get(column)
    if value is None or not reference:
        return None
    return value / reference


def ratio_rows(results: List[Dict], baseline: str) -> List[Dict]:
    """Each ok measurement against the baseline's at the same resolution,
    batch size, dtype and mode: speedup (>1 = faster) and memory ratios
    (<1 = leaner)."""
    reference = {(row['resolution'], ) + series_key(row)[1:]: row
                 for row in results
                 if row['model'] == baseline and row['status'] == 'ok'}
    rows = []
    for row in results:
        base = reference.get((row['resolution'], ) + series_key(row)[1:])
        if row['model'] == baseline or row['status'] != 'ok' or not base:
            continue
        rows.append(
            dict(model=row['model'], baseline=baseline,
                 resolution=row['resolution'], batch_size=row['batch_size'],
                 dtype=row['dtype'], mode=row['mode'],
                 speedup=row['images_per_s'] / base['images_per_s'],
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
    """Print the results (and the ratios to the baseline; saved too as
    ratios.csv when ``out_dir`` is given)."""
    print(format_table(results, ('model', 'resolution', 'batch_size',
                                 'dtype', 'mode', 'status', 'images_per_s',
                                 'median_s', 'peak_memory_mb',
                                 'working_memory_mb', 'allocated_memory_mb')))
    implementations = {row['model']: row['implementation']
                       for row in results if row.get('implementation')}
    for model, implementation in implementations.items():
        print(f'{model}: {implementation}')
    if not baseline:
        return
    ratios = ratio_rows(results, baseline)
    print(f'\nAgainst {baseline} (speedup > 1: faster; memory ratio < 1: '
          'leaner):')
    print(format_table(ratios, RATIO_COLUMNS[:1] + RATIO_COLUMNS[2:]))
    if out_dir:
        write_csv(os.path.join(out_dir, 'ratios.csv'), ratios,
                  RATIO_COLUMNS)
