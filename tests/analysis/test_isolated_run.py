"""The watchdog's outcomes other than a result: time out, memory cap, and a
worker that crashes (the ok path: tests/tools/test_benchmark.py)."""
import pytest

from mmvim.analysis.isolated_run import run_isolated

TASK = dict(model='vim-tiny', resolution=32, batch_size=1, dtype='fp32',
            mode='inference', device='cpu', warmup=0, repeats=1, threads=1,
            max_memory_gb=0)


def test_a_measurement_over_its_time_is_killed_and_recorded():
    # Importing torch alone takes longer than this.
    outcome = run_isolated(TASK, timeout_s=0.2)
    assert (outcome['status'], outcome['note']) == ('timeout', 'over 0.2 s')
    assert outcome['memory_kind'] == 'cpu_sampled_rss'


def test_a_measurement_over_its_rss_cap_is_an_oom():
    outcome = run_isolated(dict(TASK, max_memory_gb=0.001), timeout_s=60)
    assert outcome['status'] == 'oom'
    assert outcome['note'] == 'RSS over --max-memory-gb 0.001'
    assert outcome['peak_memory_mb'] > 1


@pytest.mark.slow  # the worker imports mmvim before it fails
def test_a_crashing_worker_is_an_error_with_its_stderr():
    broken = {key: value for key, value in TASK.items() if key != 'threads'}
    outcome = run_isolated(broken, timeout_s=120)
    assert outcome['status'] == 'error'
    assert outcome['note'].startswith('exit 1: ')
    assert "KeyError: 'threads'" in outcome['note']
