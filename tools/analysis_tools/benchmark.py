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
CUDA); images/s = batch size / median step time.
Memory: CUDA: torch.cuda.max_memory_allocated of the subprocess (weights,
inputs, activations, gradients); CPU: peak RSS of the subprocess (getrusage,
includes the Python interpreter and libraries). 'working_memory_mb' is the peak
minus what was in use just before the first step.

Outputs go to a new timestamped directory under --out-dir (or --out, which
must not exist yet): results.csv, results.json (with the run's metadata),
ratios.csv with --baseline, and one PNG per (mode, dtype, batch size): speed
and peak memory against resolution, one line per model.
"""
import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmvim.analysis.config_models import (build_config_model,
                                         synthetic_data_samples)

VIM_ARCHS = ('tiny', 'small', 'base')
VIM_VARIANTS = ('twocall', )
DEIT_ARCHS = {'tiny': (192, 3), 'small': (384, 6)}
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
MODES = ('inference', 'train')
FAILED = ('oom', 'timeout')
COLUMNS = ('model', 'implementation', 'backend', 'device', 'resolution',
           'batch_size', 'dtype', 'mode', 'status', 'images_per_s',
           'median_s', 'min_s', 'peak_memory_mb', 'working_memory_mb',
           'memory_kind', 'threads', 'warmup', 'repeats', 'note')
RATIO_COLUMNS = ('model', 'baseline', 'resolution', 'batch_size', 'dtype',
                 'mode', 'speedup', 'peak_memory_ratio',
                 'working_memory_ratio')
WATCH_INTERVAL_S = 0.1


@dataclass(frozen=True)
class ModelSpec:
    """A parsed --models entry."""
    name: str
    family: str  # 'vim' | 'deit' | 'config'
    arch: str = ''  # vim / deit size
    config: str = ''
    two_call: bool = False
    backend: str = ''  # '' = $MMVIM_OPS_BACKEND


def parse_model(name: str) -> ModelSpec:
    """'vim-tiny-twocall@torch' -> ModelSpec; ValueError on anything else."""
    from mmvim.ops import backend_names
    base, _, backend = name.partition('@')
    if backend and backend not in ('auto', *backend_names()):
        raise ValueError(f'{name}: the backend must be one of '
                         f'{("auto", *backend_names())}.')
    if base.startswith('config:'):
        return ModelSpec(name, 'config', config=base[len('config:'):],
                         backend=backend)
    family, _, rest = base.partition('-')
    arch, *variants = rest.split('-')
    if family == 'deit' and arch in DEIT_ARCHS and not variants:
        if backend:
            raise ValueError(f'{name}: DeiT does not use the mmvim ops.')
        return ModelSpec(name, 'deit', arch)
    if (family == 'vim' and arch in VIM_ARCHS
            and set(variants) <= set(VIM_VARIANTS)
            and len(set(variants)) == len(variants)):
        return ModelSpec(name, 'vim', arch, two_call='twocall' in variants,
                         backend=backend)
    raise ValueError(
        f'Unknown model {name!r}: use vim-{{{",".join(VIM_ARCHS)}}}'
        f'[-twocall], deit-{{{",".join(DEIT_ARCHS)}}} or config:PATH, '
        'optionally with @<backend> (e.g. @cpu, @torch, @sequential).')


# --------------------------------------------------------------------------
# Models (built inside the measuring subprocess)


class DeiTBlock(nn.Module):
    """Pre-norm transformer block; attention by F.scaled_dot_product_attention
    (flash / memory-efficient kernels where PyTorch has them)."""

    def __init__(self, dims: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        self.qkv = nn.Linear(dims, 3 * dims)
        self.proj = nn.Linear(dims, dims)
        self.norm2 = nn.LayerNorm(dims, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dims, mlp_ratio * dims), nn.GELU(),
            nn.Linear(mlp_ratio * dims, dims))

    def forward(self, x):
        batch, tokens, dims = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads,
                                               -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, tokens,
                                                           dims))
        return x + self.mlp(self.norm2(x))


class DeiT(nn.Module):
    """DeiT backbone (class token first, learned position embedding for
    ``img_size``); forward returns the normalised tokens (B, 1 + HW, D)."""

    def __init__(self, dims: int, heads: int, img_size: int,
                 depth: int = 12, patch_size: int = 16):
        super().__init__()
        grid = img_size // patch_size
        self.patch_embed = nn.Conv2d(3, dims, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + 1, dims) *
                                      .02)
        self.blocks = nn.Sequential(
            *[DeiTBlock(dims, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dims, eps=1e-6)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return self.norm(self.blocks(tokens))


def build_deit(arch: str, img_size: int):
    """(model, implementation): timm's DeiT when timm imports, else ours."""
    try:
        import timm
    except Exception as error:  # noqa: BLE001 - e.g. torchvision broken
        dims, heads = DEIT_ARCHS[arch]
        reason = type(error).__name__
        return DeiT(dims, heads,
                    img_size), f'built-in sdpa (no timm: {reason})'
    model = timm.create_model(f'deit_{arch}_patch16_224', pretrained=False,
                              num_classes=0, img_size=img_size)
    fused = all(
        getattr(block.attn, 'fused_attn', False) for block in model.blocks)
    model.forward = model.forward_features
    return model, f'timm {timm.__version__} (fused_attn={fused})'


@dataclass
class Workload:
    """What one measurement runs: ``step`` once per timed iteration."""
    step: Callable[[], None]
    implementation: str
    backend: str


def _mean_of(outputs) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs.float().mean()
    return sum(_mean_of(output) for output in outputs)


def build_workload(spec: ModelSpec, resolution: int, batch: int, dtype: str,
                   mode: str, device: torch.device) -> Workload:
    """Model, input and the step function of one measurement."""
    import mmvim.ops
    if spec.backend:
        mmvim.ops.set_backend(spec.backend)
    backend = '-'
    if spec.family == 'deit':
        model, implementation = build_deit(spec.arch, resolution)
    elif spec.family == 'vim':
        from mmvim.models.backbones.vision_mamba import VisionMamba
        model = VisionMamba(arch=spec.arch, img_size=resolution,
                            fuse_directions=not spec.two_call)
        implementation = 'mmvim ' + ('two-call' if spec.two_call else 'fused')
        backend = mmvim.ops.get_backend(device)
    else:
        model, scope = build_config_model(spec.config)
        implementation = f'{scope} {type(model).__name__}'
        backend = mmvim.ops.get_backend(device)
    model = model.to(device).train(mode == 'train')
    inputs = torch.randn(batch, 3, resolution, resolution, device=device)
    if spec.family == 'config':
        samples = synthetic_data_samples(scope, batch,
                                         (resolution, resolution), device,
                                         with_targets=mode == 'train')

        def forward():
            return model(inputs, samples, mode='tensor')

        def loss():
            return model.parse_losses(model(inputs, samples, mode='loss'))[0]
    else:

        def forward():
            return model(inputs)

        def loss():
            return _mean_of(model(inputs))

    if dtype == 'fp32':
        autocast = contextlib.nullcontext
    else:

        def autocast():
            return torch.autocast(device.type, dtype=DTYPES[dtype])

    if mode == 'inference':

        def step():
            with torch.no_grad(), autocast():
                forward()
    else:

        def step():
            with autocast():
                value = loss()
            value.backward()
            model.zero_grad(set_to_none=True)

    return Workload(step, implementation, backend)


# --------------------------------------------------------------------------
# One measurement (subprocess side)


def _current_rss_mb() -> Optional[float]:
    try:
        with open('/proc/self/statm') as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return None
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20


def _memory_in_use_mb(device) -> Optional[float]:
    if device.type == 'cuda':
        return torch.cuda.memory_allocated(device) / 2**20
    return _current_rss_mb()


def _peak_memory_mb(device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA OOM, Python's MemoryError, or the CPU allocator giving up."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        text in message for text in ('out of memory', 'not enough memory',
                                     "can't allocate memory"))


def measure(task: Dict) -> Dict:
    """Build, warm up and time one measurement in this process.

    ``task``: model, resolution, batch_size, dtype, mode, device, warmup,
    repeats, threads, max_memory_gb, reuse_freed_cpu_memory. Returns the measured fields of a result
    row; failures come back as a status, never as an exception.
    """
    device = torch.device(task['device'])
    if task['threads']:
        torch.set_num_threads(task['threads'])
    if task.get('reuse_freed_cpu_memory') and device.type == 'cpu':
        from mmvim.runtime import reuse_freed_cpu_memory
        reuse_freed_cpu_memory()
    row = dict(status='ok', note='', threads=torch.get_num_threads(),
               memory_kind='cuda_max_allocated'
               if device.type == 'cuda' else 'cpu_peak_rss')
    torch.manual_seed(0)
    try:
        if device.type == 'cuda' and task['max_memory_gb']:
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(
                min(1., task['max_memory_gb'] * 2**30 / total), device)
        workload = build_workload(
            parse_model(task['model']), task['resolution'],
            task['batch_size'], task['dtype'], task['mode'], device)
        row.update(implementation=workload.implementation,
                   backend=workload.backend)
        in_use = _memory_in_use_mb(device)
        times = []
        for index in range(task['warmup'] + task['repeats']):
            start = time.perf_counter()
            workload.step()
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            if index >= task['warmup']:
                times.append(time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 - recorded, not raised
        if not is_out_of_memory(error):
            row.update(status='error',
                       note=f'{type(error).__name__}: {error}'[:500])
            return row
        row.update(status='oom', note=f'{type(error).__name__}'
                   f': {str(error).splitlines()[0][:200]}')
        return row
    median = statistics.median(times)
    peak = _peak_memory_mb(device)
    row.update(median_s=median, min_s=min(times),
               images_per_s=task['batch_size'] / median,
               peak_memory_mb=peak,
               working_memory_mb=None if in_use is None else peak - in_use,
               times_s=times)
    return row


# --------------------------------------------------------------------------
# Running the measurements (parent side)


def _rss_mb_of(pid: int) -> float:
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return 0.


def run_isolated(task: Dict, timeout_s: float) -> Dict:
    """``measure(task)`` in a fresh Python process, under a time limit and,
    on CPU, an RSS limit (--max-memory-gb) watched from here.

    On CPU the RSS is also sampled from here, so a measurement that never
    reports (timed out, killed) still records the highest RSS seen
    (memory_kind 'cpu_sampled_rss', a lower bound of its peak).
    """
    on_cpu = task['device'] == 'cpu'
    cpu_limit_mb = task['max_memory_gb'] * 2**10 if on_cpu else 0
    with tempfile.TemporaryDirectory() as tmp:
        result_file = os.path.join(tmp, 'result.json')
        with open(os.path.join(tmp, 'stderr.txt'), 'w+') as log:
            process = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), '--worker',
                 json.dumps(task), '--result-file', result_file],
                stdout=subprocess.DEVNULL, stderr=log)
            started, killed_for, sampled_mb = time.monotonic(), None, 0.
            while process.poll() is None:
                if on_cpu:
                    sampled_mb = max(sampled_mb, _rss_mb_of(process.pid))
                if time.monotonic() - started > timeout_s:
                    killed_for = 'timeout'
                elif cpu_limit_mb and sampled_mb > cpu_limit_mb:
                    killed_for = 'memory'
                if killed_for:
                    process.kill()
                    process.wait()
                    break
                time.sleep(WATCH_INTERVAL_S)
            log.seek(0)
            stderr_tail = log.read()[-300:].strip()
        if os.path.exists(result_file) and not killed_for:
            with open(result_file) as file:
                return json.load(file)
    if killed_for == 'timeout':
        outcome = dict(status='timeout', note=f'over {timeout_s:g} s')
    elif killed_for == 'memory':
        outcome = dict(status='oom', note='RSS over --max-memory-gb '
                       f'{task["max_memory_gb"]:g}')
    elif process.returncode == -signal.SIGKILL:
        outcome = dict(status='oom', note='killed by SIGKILL (the kernel '
                       'OOM killer?)')
    else:
        outcome = dict(status='error', note=f'exit {process.returncode}: '
                       f'{stderr_tail}')
    if sampled_mb:
        outcome.update(peak_memory_mb=sampled_mb,
                       memory_kind='cpu_sampled_rss')
    return outcome


def plan(args) -> List[Dict]:
    """The tasks of a run; resolutions ascend so that a failure at one size
    can skip the larger ones, and every model of a size runs back to back
    so that ratios compare measurements taken close in time."""
    tasks = []
    for mode in args.modes:
        for dtype in args.dtypes:
            for batch in args.batch_sizes:
                for resolution in sorted(args.resolutions):
                    for model in args.models:
                        tasks.append(
                            dict(model=model, resolution=resolution,
                                 batch_size=batch, dtype=dtype, mode=mode,
                                 device=args.device, warmup=args.warmup,
                                 repeats=args.repeats, threads=args.threads,
                                 max_memory_gb=args.max_memory_gb,
                                 reuse_freed_cpu_memory=args.
                                 reuse_freed_cpu_memory))
    return tasks


def _series_key(row: Dict) -> tuple:
    return (row['model'], row['batch_size'], row['dtype'], row['mode'])


def run_all(args, out_dir: str, meta: Dict) -> List[Dict]:
    """Measure every task with a progress bar, saving after each one."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                               TextColumn, TimeElapsedColumn)
    tasks = plan(args)
    results, failed_at = [], {}
    columns = (TextColumn('{task.description}'), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        bar = progress.add_task('benchmark', total=len(tasks))
        for task in tasks:
            label = (f'{task["model"]} {task["resolution"]}px '
                     f'bs{task["batch_size"]} {task["dtype"]} {task["mode"]}')
            progress.update(bar, description=label)
            key = _series_key(task)
            if key in failed_at and not args.no_skip:
                outcome = dict(status='skipped',
                               note=f'{failed_at[key]} at a smaller size')
            else:
                outcome = run_isolated(task, args.timeout)
                if outcome['status'] in FAILED:
                    failed_at.setdefault(
                        key, f'{outcome["status"]} at {task["resolution"]}')
            row = {**task, **outcome}
            results.append(row)
            progress.console.print(f'{label}: {describe(row)}')
            write_results(results, out_dir, meta)
            progress.advance(bar)
    return results


def describe(row: Dict) -> str:
    if row['status'] != 'ok':
        seen = (f' (RSS seen: {row["peak_memory_mb"]:.0f} MiB)'
                if row.get('peak_memory_mb') else '')
        return f'{row["status"]} {row.get("note", "")}{seen}'
    return (f'{row["images_per_s"]:.3g} img/s, median {row["median_s"]:.3g} '
            f's, peak {row["peak_memory_mb"]:.0f} MiB')


# --------------------------------------------------------------------------
# Outputs


def new_output_dir(args) -> str:
    """A directory no earlier run wrote to."""
    if args.out:
        os.makedirs(args.out)  # raises if it exists: never overwrite
        return args.out
    stamp = datetime.datetime.now().strftime('%Y%m%d_%H%M%S')
    for suffix in [''] + [f'_{n}' for n in range(1, 100)]:
        path = os.path.join(args.out_dir, stamp + suffix)
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f'No free output directory for {stamp}.')


def _write_csv(path: str, rows: List[Dict], columns) -> None:
    with open(path, 'w', newline='') as file:
        writer = csv.DictWriter(file, columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)


def write_results(results: List[Dict], out_dir: str, meta: Dict) -> None:
    _write_csv(os.path.join(out_dir, 'results.csv'), results, COLUMNS)
    with open(os.path.join(out_dir, 'results.json'), 'w') as file:
        json.dump(dict(meta=meta, results=results), file, indent=1)


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata(argv: List[str], device: str) -> Dict:
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
        device_name = _cpu_name()
    return dict(command=' '.join(['python', 'tools/analysis_tools/'
                                  'benchmark.py'] + argv),
                date=datetime.datetime.now().isoformat(timespec='seconds'),
                torch=torch.__version__, device=device,
                device_name=device_name, cpu_count=os.cpu_count(),
                git_commit=commit)


def ratio_rows(results: List[Dict], baseline: str) -> List[Dict]:
    """Each ok measurement against the baseline's at the same resolution,
    batch size, dtype and mode: speedup (>1 = faster) and memory ratios
    (<1 = leaner)."""
    reference = {(row['resolution'], ) + _series_key(row)[1:]: row
                 for row in results
                 if row['model'] == baseline and row['status'] == 'ok'}
    rows = []
    for row in results:
        base = reference.get((row['resolution'], ) + _series_key(row)[1:])
        if row['model'] == baseline or row['status'] != 'ok' or not base:
            continue
        working = (row.get('working_memory_mb'),
                   base.get('working_memory_mb'))
        rows.append(
            dict(model=row['model'], baseline=baseline,
                 resolution=row['resolution'], batch_size=row['batch_size'],
                 dtype=row['dtype'], mode=row['mode'],
                 speedup=row['images_per_s'] / base['images_per_s'],
                 peak_memory_ratio=row['peak_memory_mb'] /
                 base['peak_memory_mb'],
                 working_memory_ratio=working[0] / working[1]
                 if None not in working and working[1] > 0 else None))
    return rows


def format_table(rows: List[Dict], columns) -> str:
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


def plot_results(results: List[Dict], out_dir: str, title: str) -> List[str]:
    """One PNG per (mode, dtype, batch size), two panels as in the paper's
    Figure 1: images/s and peak memory against resolution, one line per
    model; an 'x' at the top marks where a model ran out of memory."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = {}
    for row in results:
        groups.setdefault((row['mode'], row['dtype'], row['batch_size']),
                          []).append(row)
    paths = []
    for (mode, dtype, batch), rows in groups.items():
        figure, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
        models = list(dict.fromkeys(row['model'] for row in rows))
        for index, model in enumerate(models):
            color = f'C{index % 10}'
            done = [r for r in rows if r['model'] == model
                    and r['status'] == 'ok']
            sizes = [r['resolution'] for r in done]
            speed.plot(sizes, [r['images_per_s'] for r in done], 'o-',
                       color=color, label=model)
            memory.plot(sizes, [r['peak_memory_mb'] / 2**10 for r in done],
                        'o-', color=color, label=model)
            for r in rows:
                if r['model'] == model and r['status'] == 'oom':
                    for axis in (speed, memory):
                        axis.plot(r['resolution'], .97, 'x', color=color,
                                  markersize=9,
                                  transform=axis.get_xaxis_transform())
        speeds = [row['images_per_s'] for row in rows if row['status'] == 'ok']
        if speeds and max(speeds) > 20 * min(speeds):
            speed.set_yscale('log')  # e.g. next to the sequential baseline
        resolutions = sorted({row['resolution'] for row in rows})
        memory_label = ('GPU memory (GiB, max allocated)'
                        if rows[0]['device'] == 'cuda' else
                        'peak RSS (GiB)')
        for axis, label in ((speed, 'images / s'), (memory, memory_label)):
            axis.set_xlabel('resolution (px)')
            axis.set_ylabel(label)
            axis.set_xticks(resolutions)
            axis.grid(alpha=.3)
        speed.legend(fontsize=8)
        figure.suptitle(f'{title} - {mode}, {dtype}, batch {batch} '
                        '(x: out of memory)')
        figure.tight_layout()
        path = os.path.join(out_dir, f'speed_memory_{mode}_{dtype}_'
                            f'bs{batch}.png')
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths


def report(results: List[Dict], baseline: Optional[str],
           out_dir: Optional[str]) -> None:
    """Print the results (and the ratios to the baseline; saved too when
    ``out_dir`` is given)."""
    print(format_table(results, ('model', 'resolution', 'batch_size',
                                 'dtype', 'mode', 'status', 'images_per_s',
                                 'median_s', 'peak_memory_mb',
                                 'working_memory_mb')))
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
        _write_csv(os.path.join(out_dir, 'ratios.csv'), ratios,
                   RATIO_COLUMNS)


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
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--result-file', help=argparse.SUPPRESS)
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
    return args


def main(argv=None) -> Optional[str]:
    """Run the benchmark; returns the output directory (None when only an
    earlier run is reported)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker:
        row = measure(json.loads(args.worker))
        # Renamed into place: a measurement killed mid-way leaves no file.
        with open(args.result_file + '.part', 'w') as file:
            json.dump(row, file)
        os.replace(args.result_file + '.part', args.result_file)
        return None
    if args.from_results:
        with open(args.from_results) as file:
            report(json.load(file)['results'], args.baseline, None)
        return None
    out_dir = new_output_dir(args)
    meta = run_metadata(argv, args.device)
    results = run_all(args, out_dir, meta)
    report(results, args.baseline, out_dir)
    title = args.title or f'{meta["device_name"]} ({args.device})'
    for path in plot_results(results, out_dir, title):
        print(f'plot: {path}')
    print(f'results: {out_dir}')
    return out_dir


if __name__ == '__main__':
    main()
