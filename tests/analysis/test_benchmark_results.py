import csv
import json

import pytest

from mmvim.analysis import benchmark_results
from mmvim.analysis.benchmark_results import (COLUMNS, RATIO_COLUMNS,
                                              format_table, new_output_dir,
                                              ratio_rows, report,
                                              write_results)

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
