#!/usr/bin/env python
"""Speed and peak memory of Vim backbones against resolution (the Vim paper's
Figure 1), with the baselines needed to judge them.

Each measurement -- one (model, resolution, batch size, dtype, mode) -- runs in
a fresh subprocess: its peak memory is its own, and running out of memory or
time ends that measurement only; it is recorded as 'oom' / 'timeout'.

Models (--models), one string per measured variant:

  vim-tiny, vim-small, vim-base   mmvim VisionMamba, both scan directions in
                                  one scan call (the default)
  vim-<arch>-twocall              one call per direction, as the reference
  deit-tiny, deit-small           DeiT (patch 16, 12 layers, dims 192 / 384,
                                  3 / 6 heads, MLP ratio 4) with PyTorch's
                                  fused attention (F.scaled_dot_product_
                                  attention): timm's model when timm imports,
                                  otherwise a built-in module of the same
                                  architecture (the 'implementation' column
                                  says which; timm needs torchvision, and
                                  PyPI's torchvision does not load beside a
                                  CPU-only torch)
  config:PATH                     the whole model of an mmseg / mmdet config
                                  (training step = its loss on a synthetic
                                  batch)
  vim-<arch>[-twocall]-compiled,  the same model through torch.compile
  deit-<arch>-compiled            (Inductor, one graph); its first steps
                                  include the compilation: give --warmup a few

An '@<backend>' suffix runs that variant on one of the mmvim ops backends
(`python -m mmvim.ops` lists them): vim-tiny@cpu (the compiled kernel),
vim-tiny@torch (the portable scan), vim-tiny@sequential (the plain token loop,
autograd through it: the baseline), vim-tiny@triton, vim-tiny@cuda, @auto.
Without one, $MMVIM_OPS_BACKEND (default auto); the 'backend' column says
which ran.

Modes: 'inference' is a no-grad forward; 'train' is forward + backward (of the
backbone output's mean, or of a config model's loss), gradients freed after
each step, no optimizer. Each variant is built for the measured input size
(its position embedding fits), with random weights.

Timing: --warmup untimed steps, then --repeats timed steps (synchronised on
CUDA); images/s = batch size / median step time. On a shared machine whose
speed drifts, --rounds N measures every size N times, the models' order
reversed every other round: a speedup is the median of the rounds' own
ratios (each of two measurements taken back to back), printed with its least
and greatest; results.csv keeps every round ('round' column).
Memory: CUDA: torch.cuda.max_memory_allocated of the subprocess (weights,
inputs, activations, gradients); CPU: peak RSS of the subprocess (getrusage,
includes the Python interpreter and libraries). 'working_memory_mb' is the peak
minus what was in use just before the first step. 'allocated_memory_mb': the
most the allocator handed out at once during a step beyond what was in use
before it (CPU: one more, untimed step under the profiler's allocation events;
no heap fragmentation or library pages in it; CUDA: the working memory).

Outputs go to a new timestamped directory under --out-dir (or --out, which
must not exist yet): results.csv, results.json (with the run's metadata),
ratios.csv with --baseline, and one PNG per (mode, dtype, batch size): speed
and peak memory against resolution, one line per model.
"""
import argparse
import json
import sys
from typing import Dict, List, Optional

import torch

from mmvim.analysis.benchmark_results import (
    new_output_dir,
    report,
    run_metadata,
    series_key,
    write_results,
)
from mmvim.analysis.isolated_run import run_isolated
from mmvim.analysis.speed_memory_plot import plot_results
from mmvim.analysis.workloads import DTYPES, MODES, parse_model

# How the metadata of a run names this command.
COMMAND = ['python', 'tools/analysis_tools/benchmark.py']
# A size that failed so will the larger ones of its series: they are skipped.
FAILED = ('oom', 'timeout')


def plan(args) -> List[Dict]:
    """The tasks of a run; resolutions ascend so that a failure at one size
    can skip the larger ones, and every model of a size runs back to back
    so that ratios compare measurements taken close in time. With
    ``--rounds`` the models of a size run that many times, every other
    round in reverse order, so that none is always first after a pause."""
    tasks = []
    for mode in args.modes:
        for dtype in args.dtypes:
            for batch in args.batch_sizes:
                for resolution in sorted(args.resolutions):
                    for round_index in range(args.rounds):
                        models = args.models[::-1 if round_index % 2 else 1]
                        for model in models:
                            tasks.append(
                                dict(model=model, resolution=resolution,
                                     batch_size=batch, dtype=dtype,
                                     mode=mode, device=args.device,
                                     warmup=args.warmup,
                                     repeats=args.repeats,
                                     threads=args.threads,
                                     max_memory_gb=args.max_memory_gb,
                                     reuse_freed_cpu_memory=args.
                                     reuse_freed_cpu_memory,
                                     round=round_index))
    return tasks


def run_all(args, out_dir: str, meta: Dict) -> List[Dict]:
    """Measure every task with a progress bar, saving after each one."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    tasks = plan(args)
    results, failed_at = [], {}
    columns = (TextColumn('{task.description}'), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        bar = progress.add_task('benchmark', total=len(tasks))
        for task in tasks:
            label = (f'{task["model"]} {task["resolution"]}px '
                     f'bs{task["batch_size"]} {task["dtype"]} {task["mode"]}')
            if args.rounds > 1:
                label += f' round {task["round"] + 1}/{args.rounds}'
            progress.update(bar, description=label)
            key = series_key(task)
            if key in failed_at and not args.no_skip:
                status, resolution = failed_at[key]
                when = ('in an earlier round' if resolution
                        == task['resolution'] else 'at a smaller size')
                outcome = dict(status='skipped',
                               note=f'{status} at {resolution} {when}')
            else:
                outcome = run_isolated(task, args.timeout)
                if outcome['status'] in FAILED:
                    failed_at.setdefault(
                        key, (outcome['status'], task['resolution']))
            row = {**task, **outcome}
            results.append(row)
            progress.console.print(f'{label}: {describe(row)}')
            write_results(results, out_dir, meta)
            progress.advance(bar)
    return results


def describe(row: Dict) -> str:
    """One row's outcome, for the progress log."""
    if row['status'] != 'ok':
        seen = (f' (RSS seen: {row["peak_memory_mb"]:.0f} MiB)'
                if row.get('peak_memory_mb') else '')
        return f'{row["status"]} {row.get("note", "")}{seen}'
    return (f'{row["images_per_s"]:.3g} img/s, median {row["median_s"]:.3g} '
            f's, peak {row["peak_memory_mb"]:.0f} MiB')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--models', nargs='+',
                        default=['vim-tiny', 'deit-tiny'])
    parser.add_argument('--resolutions', nargs='+', type=int,
                        default=[224, 512, 640, 738, 1024, 1248])
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1])
    parser.add_argument('--dtypes', nargs='+', choices=DTYPES,
                        default=['fp32'],
                        help='fp32, or bf16 / fp16 autocast')
    parser.add_argument('--modes', nargs='+', choices=MODES,
                        default=['inference'])
    parser.add_argument('--device', choices=('cpu', 'cuda'),
                        default='cuda' if torch.cuda.is_available() else
                        'cpu')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument(
        '--rounds', type=int, default=1,
        help='measure the models of each size this many times, alternating '
        'their order; tables, ratios (median of the rounds\' speedups, with '
        'their least and greatest) and plots combine the rounds')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch threads per measurement (0: default)')
    parser.add_argument(
        '--reuse-freed-cpu-memory',
        action='store_true',
        help='CPU: let glibc keep freed memory for reuse '
        '(mmvim.runtime.reuse_freed_cpu_memory, as tools/train.py does on a '
        'CPU); default: glibc as configured')
    parser.add_argument('--timeout', type=float, default=1800,
                        help='seconds per measurement, model build included')
    parser.add_argument('--max-memory-gb', type=float, default=0,
                        help='memory cap per measurement: on CPU the '
                        'subprocess is killed above this RSS, on CUDA the '
                        'allocator is capped; both count as oom (0: none)')
    parser.add_argument('--no-skip', action='store_true',
                        help='also run the sizes above one that ran out of '
                        'memory or time (default: record them as skipped)')
    parser.add_argument('--baseline',
                        help='model to print (and save) ratios against, '
                        'e.g. vim-tiny@sequential')
    parser.add_argument('--out-dir', default='work_dirs/benchmark',
                        help='a new timestamped directory is made in it')
    parser.add_argument('--out', help='output directory; must not exist')
    parser.add_argument('--title', default='',
                        help='plot title (default: the device)')
    parser.add_argument('--from-results', metavar='RESULTS_JSON',
                        help='measure nothing: print the tables (and the '
                        '--baseline ratios) of an earlier run')
    args = parser.parse_args(argv)
    for model in args.models:
        try:
            parse_model(model)
        except ValueError as error:
            parser.error(str(error))
    if min(args.resolutions) < 16:
        parser.error('resolutions must be at least one 16 px patch')
    if args.baseline and args.baseline not in args.models \
            and not args.from_results:
        parser.error(f'--baseline {args.baseline} is not among --models')
    if args.repeats < 1:
        parser.error('--repeats must be at least 1')
    if args.rounds < 1:
        parser.error('--rounds must be at least 1')
    return args


def main(argv=None) -> Optional[str]:
    """Run the benchmark; returns the output directory (None when only an
    earlier run is reported)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.from_results:
        with open(args.from_results) as file:
            report(json.load(file)['results'], args.baseline, None)
        return None
    out_dir = new_output_dir(args.out, args.out_dir)
    meta = run_metadata(COMMAND + argv, args.device)
    results = run_all(args, out_dir, meta)
    report(results, args.baseline, out_dir)
    title = args.title or f'{meta["device_name"]} ({args.device})'
    for path in plot_results(results, out_dir, title):
        print(f'plot: {path}')
    print(f'results: {out_dir}')
    return out_dir


if __name__ == '__main__':
    main()
