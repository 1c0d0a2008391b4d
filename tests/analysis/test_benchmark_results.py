import csv
import json

import pytest

from mmvim.analysis import benchmark_results
from mmvim.analysis.benchmark_results import (COLUMNS, RATIO_COLUMNS,
                                              combine_rounds, format_table,
                                              new_output_dir, ratio_rows,
                                              report, write_results)

COMMON = dict(resolution=512, batch_size=1, dtype='fp32', mode='train',
              status='ok')
RESULTS = [
    dict(COMMON, model='base', images_per_s=1., peak_memory_mb=900.,
         working_memory_mb=600., allocated_memory_mb=400.,
         implementation='ref'),
    dict(COMMON, model='fast', images_per_s=12., peak_memory_mb=300.,
         working_memory_mb=150., allocated_memory_mb=100.,
         implementation='ours'),
    dict(COMMON, model='no-working', images_per_s=2., peak_memory_mb=90.,
         working_memory_mb=None),
    dict(COMMON, model='broken', status='oom'),
    dict(COMMON, model='other-size', resolution=224, images_per_s=5.,
         peak_memory_mb=10.),
]


def test_ratios_pair_each_measurement_with_the_baselines_at_its_size():
    fast, no_working = ratio_rows(RESULTS, 'base')
    assert (fast['model'], fast['baseline']) == ('fast', 'base')
    assert (fast['speedup'], fast['working_memory_ratio']) == (12., .25)
    assert fast['peak_memory_ratio'] == pytest.approx(1 / 3)
    assert fast['allocated_memory_ratio'] == .25
    # A row of a run from before the column: no ratio, no error.
    assert no_working['working_memory_ratio'] is None
    assert no_working['allocated_memory_ratio'] is None
    assert ratio_rows(RESULTS, 'absent') == []


def test_table_aligns_columns_and_rounds_floats():
    table = format_table([dict(a=1 / 3, bb=None), dict(a=12345., bb='x')],
                         ('a', 'bb'))
    assert table.splitlines() == ['a         bb', '0.333       ',
                                  '1.23e+04  x ']


def test_report_prints_and_saves_the_ratios(tmp_path, capsys):
    report(RESULTS, 'base', str(tmp_path))
    out = capsys.readouterr().out
    assert 'fast: ours' in out and 'base: ref' in out
    against = out.split('Against base')[1]
    assert 'fast' in against and 'broken' not in against
    with open(tmp_path / 'ratios.csv', newline='') as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames) == RATIO_COLUMNS
        assert [row['model'] for row in reader] == ['fast', 'no-working']


def test_results_files_hold_the_columns_and_every_field(tmp_path):
    write_results(RESULTS[:2], str(tmp_path), dict(command='x'))
    with open(tmp_path / 'results.csv', newline='') as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames) == COLUMNS
        assert [row['model'] for row in reader] == ['base', 'fast']
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert saved == dict(meta=dict(command='x'), results=RESULTS[:2])


def test_earlier_results_are_never_overwritten(tmp_path):
    first, second = (new_output_dir(None, str(tmp_path)) for _ in range(2))
    assert first != second and second.startswith(first)
    with pytest.raises(FileExistsError):
        new_output_dir(first, str(tmp_path))


def test_metadata_names_the_command_and_the_machine():
    meta = benchmark_results.run_metadata(['python', 'x.py', '--a'], 'cpu')
    assert meta['command'] == 'python x.py --a'
    assert meta['device'] == 'cpu' and meta['device_name']
    assert meta['git_commit']


def rounds_of(model, speeds, peaks, status='ok'):
    """One measurement's rounds: images/s and peak memory of each."""
    return [
        dict(COMMON, model=model, round=index, status=status,
             images_per_s=speed, median_s=1 / speed, min_s=.9 / speed,
             peak_memory_mb=peak, working_memory_mb=peak / 2,
             allocated_memory_mb=None, times_s=[1 / speed])
        for index, (speed, peak) in enumerate(zip(speeds, peaks))
    ]


def test_rounds_combine_into_one_row_per_measurement():
    results = rounds_of('base', [1., 2., 4.], [900., 950., 920.])
    combined, = combine_rounds(results)
    assert combined['rounds'] == 3
    assert combined['median_s'] == .5 and combined['images_per_s'] == 2.
    assert (combined['images_per_s_min'], combined['images_per_s_max']) == \
        (1., 4.)
    assert combined['min_s'] == pytest.approx(.9 / 4)
    # A peak is the highest seen; a figure some round lacks stays unknown.
    assert combined['peak_memory_mb'] == 950.
    assert combined['working_memory_mb'] == 475.
    assert combined['allocated_memory_mb'] is None
    assert 'round' not in combined and 'times_s' not in combined
    # Rows without rounds (one round, or earlier runs) stay as they are.
    assert combine_rounds(RESULTS) == RESULTS


def test_a_failed_round_makes_the_measurement_a_failure():
    results = rounds_of('base', [1., 2.], [900., 950.])
    results[1].update(status='timeout', note='over 10 s')
    combined, = combine_rounds(results)
    assert (combined['status'], combined['note']) == ('timeout', 'over 10 s')


def test_speedups_are_the_rounds_own_ratios():
    # The machine halves its speed in the second round: the rounds' ratios
    # (4, 4, 3) say so, a ratio of the whole run's medians (2 / 0.5) not.
    results = (rounds_of('base', [1., .25, 1.], [900.] * 3) +
               rounds_of('fast', [4., 1., 3.], [300.] * 3))
    fast, = ratio_rows(results, 'base')
    assert (fast['speedup'], fast['speedup_min'], fast['speedup_max'],
            fast['rounds']) == (4., 3., 4., 3)
    assert fast['peak_memory_ratio'] == pytest.approx(1 / 3)
    assert fast['allocated_memory_ratio'] is None


def test_report_prints_the_rounds_and_their_spread(capsys):
    results = (rounds_of('base', [1., 1.], [900.] * 2) +
               rounds_of('fast', [4., 2.], [300.] * 2))
    report(results, 'base', None)
    table, against = capsys.readouterr().out.split('Against base')
    assert 'rounds' in table.splitlines()[0]
    header, fast = against.strip().splitlines()[1:]
    assert header.split()[:4] == ['model', 'resolution', 'batch_size',
                                  'dtype']
    assert ['speedup', 'speedup_min', 'speedup_max', 'rounds'] == \
        header.split()[5:9]
    assert fast.split()[5:9] == ['3', '2', '4', '2']
