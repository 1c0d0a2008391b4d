"""One speed / memory measurement in this process: build the workload, warm
it up, time it, read the peak memory.

Timing: ``warmup`` untimed steps, then ``repeats`` timed steps (synchronised
on CUDA); images/s = batch size / median step time.
Memory: CUDA: torch.cuda.max_memory_allocated (weights, inputs, activations,
gradients); CPU: this process's peak RSS (getrusage, includes the Python
interpreter and libraries). 'working_memory_mb' is the peak minus what was in
use just before the first step. 'allocated_memory_mb': the most bytes the
allocator had handed out at once during a step beyond what was in use before
it (on the CPU from the profiler's allocation events of one more, untimed
step): what the step's tensors and operators need, without the heap's
fragmentation and the library pages RSS also counts (on CUDA the same as the
working memory). Run each measurement in a fresh process
(:mod:`mmvim.analysis.isolated_run`) so that its peak is its own.
"""
import os
import resource
import statistics
import time
from typing import Dict, Optional

import torch

from mmvim.analysis.memory_tracking import allocator_counts
from mmvim.analysis.workloads import build_workload, parse_model


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


def _allocated_in_a_step_mb(workload, device) -> Optional[float]:
    """CPU: the allocator's peak above what was in use during one more
    step, from the profiler's allocation events. None on CUDA, where the
    working memory is counted by the allocator already."""
    if device.type == 'cuda':
        return None
    with allocator_counts() as counts:
        workload.step()
    return counts['peak'] / 2**20


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
    repeats, threads, max_memory_gb, reuse_freed_cpu_memory. Returns the
    measured fields of a result row; failures come back as a status ('oom',
    'error'), never as an exception.
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
        for _ in range(task['warmup'] + task['repeats']):
            start = time.perf_counter()
            workload.step()
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        warmup_times, times = times[:task['warmup']], times[task['warmup']:]
        # Read before the profiled step, whose event buffers RSS counts.
        peak = _peak_memory_mb(device)
        allocated = _allocated_in_a_step_mb(workload, device)
    except Exception as error:  # noqa: BLE001 - recorded, not raised
        if not is_out_of_memory(error):
            row.update(status='error',
                       note=f'{type(error).__name__}: {error}'[:500])
            return row
        row.update(status='oom', note=f'{type(error).__name__}'
                   f': {str(error).splitlines()[0][:200]}')
        return row
    median = statistics.median(times)
    working = None if in_use is None else max(0., peak - in_use)
    row.update(median_s=median, min_s=min(times),
               images_per_s=task['batch_size'] / median,
               peak_memory_mb=peak,
               # getrusage's peak and /proc's current size are counted
               # differently: a step that adds nothing can read slightly
               # below zero.
               working_memory_mb=working,
               allocated_memory_mb=working if allocated is None else allocated,
               times_s=times,
               # A compiled model's first step includes its compilation.
               warmup_times_s=warmup_times)
    return row
