import pytest
import torch

from mmvim.analysis import measurement

TASK = dict(model='vim-tiny@torch', resolution=32, batch_size=2,
            dtype='fp32', mode='inference', device='cpu', warmup=1,
            repeats=2, threads=1, max_memory_gb=0)


def test_a_measurement_times_every_repeat_and_reads_the_peak():
    row = measurement.measure(TASK)
    assert row['status'] == 'ok', row
    assert (row['backend'], row['threads']) == ('torch', 1)
    assert len(row['times_s']) == 2
    assert row['median_s'] >= row['min_s'] > 0
    assert row['images_per_s'] == pytest.approx(2 / row['median_s'])
    assert row['memory_kind'] == 'cpu_peak_rss'
    assert row['peak_memory_mb'] >= row['working_memory_mb'] >= 0
    assert row['allocated_memory_mb'] > 0


def test_the_allocated_memory_of_a_step_grows_with_its_tokens():
    # From the allocator's events, not RSS: 16x the tokens at least 4x the
    # bytes (the activations grow with the tokens, the weights not at all).
    small, large = (measurement.measure(dict(TASK, resolution=resolution))
                    for resolution in (32, 128))
    assert large['allocated_memory_mb'] > 4 * small['allocated_memory_mb']


def test_out_of_memory_inside_a_measurement_is_a_result(monkeypatch):

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate')

    monkeypatch.setattr(measurement, 'build_workload', exhausted)
    row = measurement.measure(dict(TASK, threads=0))
    assert row['status'] == 'oom'
    assert 'OutOfMemoryError' in row['note']


def test_other_errors_are_a_result_with_their_message():
    row = measurement.measure(dict(TASK, model='vim-huge'))
    assert row['status'] == 'error'
    assert row['note'].startswith("ValueError: Unknown model 'vim-huge'")


def test_what_counts_as_out_of_memory():
    assert measurement.is_out_of_memory(MemoryError())
    assert measurement.is_out_of_memory(
        RuntimeError('DefaultCPUAllocator: not enough memory'))
    assert measurement.is_out_of_memory(
        RuntimeError("[enforce fail] can't allocate memory"))
    assert not measurement.is_out_of_memory(RuntimeError('shape mismatch'))
    assert not measurement.is_out_of_memory(ValueError('out of memory'))
