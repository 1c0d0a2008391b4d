"""Each measurement in a fresh Python process, watched from the parent: its
peak memory is its own, and running out of memory or time ends that
measurement only, recorded as status 'oom' / 'timeout'.

The worker is this module's entry point::

    python -m mmvim.analysis.isolated_run --worker TASK_JSON --result-file PATH
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict

from mmvim.analysis.measurement import measure

WATCH_INTERVAL_S = 0.1
WORKER_MODULE = 'mmvim.analysis.isolated_run'


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
    """:func:`mmvim.analysis.measurement.measure` of ``task`` in a fresh
    Python process, under a time limit and, on CPU, an RSS limit
    (``task['max_memory_gb']``) watched from here.

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
                [sys.executable, '-m', WORKER_MODULE, '--worker',
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


def _worker(argv=None) -> None:
    """Measure one task and save its row where the parent reads it."""
    parser = argparse.ArgumentParser(
        description='One measurement of mmvim.analysis.isolated_run.')
    parser.add_argument('--worker', required=True, metavar='TASK_JSON')
    parser.add_argument('--result-file', required=True)
    args = parser.parse_args(argv)
    row = measure(json.loads(args.worker))
    # Renamed into place: a measurement killed mid-way leaves no file.
    with open(args.result_file + '.part', 'w') as file:
        json.dump(row, file)
    os.replace(args.result_file + '.part', args.result_file)


if __name__ == '__main__':
    _worker()
