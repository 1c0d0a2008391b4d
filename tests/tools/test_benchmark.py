"""tools/analysis_tools/benchmark.py as a user runs it: its files, the
skipping after a failure, reports of earlier runs, and its imports on a
machine with torch and mmengine alone. The library pieces it calls are
tested in tests/analysis."""
import csv
import json
from pathlib import Path

import pytest

from mmvim.analysis.benchmark_results import COLUMNS

BENCHMARK = 'tools/analysis_tools/benchmark.py'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture
def benchmark(tool_module):
    return tool_module(BENCHMARK)


def read_csv(path):
    with open(path, newline='') as file:
        reader = csv.DictReader(file)
        return reader.fieldnames, list(reader)


@pytest.mark.slow  # two measurements, each in its own process
def test_run_writes_csv_json_png_and_ratios(benchmark, tmp_path, capsys):
    out_dir = benchmark.main([
        '--models', 'vim-tiny@torch', 'vim-tiny@sequential', '--resolutions',
        '32', '--modes', 'train', '--device', 'cpu', '--threads', '1',
        '--warmup', '0', '--repeats', '1', '--baseline',
        'vim-tiny@sequential', '--out-dir',
        str(tmp_path)
    ])
    out = Path(out_dir)
    assert out.parent == tmp_path
    columns, rows = read_csv(out / 'results.csv')
    assert tuple(columns) == COLUMNS
    assert [row['status'] for row in rows] == ['ok', 'ok'], rows
    assert [row['backend'] for row in rows] == ['torch', 'sequential']
    assert all(float(row['images_per_s']) > 0 for row in rows)
    assert all(float(row['peak_memory_mb']) > 0 for row in rows)
    assert all(row['memory_kind'] == 'cpu_peak_rss' for row in rows)
    saved = json.loads((out / 'results.json').read_text())
    assert saved['meta']['command'].startswith(
        'python tools/analysis_tools/benchmark.py --models vim-tiny@torch')
    assert len(saved['results']) == 2
    _, ratios = read_csv(out / 'ratios.csv')
    assert [r['model'] for r in ratios] == ['vim-tiny@torch']
    assert float(ratios[0]['speedup']) == pytest.approx(
        float(rows[0]['images_per_s']) / float(rows[1]['images_per_s']))
    plot = out / 'speed_memory_train_fp32_bs1.png'
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert 'Against vim-tiny@sequential' in capsys.readouterr().out


def test_memory_cap_is_recorded_as_oom_and_larger_sizes_skipped(
        benchmark, tmp_path):
    # Any Python process is above 1 MB: the watchdog kills it at once.
    out_dir = benchmark.main([
        '--models', 'deit-tiny', '--resolutions', '48', '32', '--device',
        'cpu', '--max-memory-gb', '0.001', '--out-dir',
        str(tmp_path)
    ])
    _, rows = read_csv(Path(out_dir) / 'results.csv')
    statuses = [(r['resolution'], r['status']) for r in rows]
    assert statuses == [('32', 'oom'), ('48', 'skipped')]
    assert rows[1]['note'] == 'oom at 32 at a smaller size'
    assert rows[0]['memory_kind'] == 'cpu_sampled_rss'
    assert float(rows[0]['peak_memory_mb']) > 1


def test_rounds_alternate_the_models_order_and_skip_after_a_failure(
        benchmark, tmp_path):
    args = benchmark.parse_args([
        '--models', 'vim-tiny', 'deit-tiny', '--resolutions', '64', '32',
        '--rounds', '3'
    ])
    assert [(t['resolution'], t['round'], t['model'])
            for t in benchmark.plan(args)] == [
                (32, 0, 'vim-tiny'), (32, 0, 'deit-tiny'),
                (32, 1, 'deit-tiny'), (32, 1, 'vim-tiny'),
                (32, 2, 'vim-tiny'), (32, 2, 'deit-tiny'),
                (64, 0, 'vim-tiny'), (64, 0, 'deit-tiny'),
                (64, 1, 'deit-tiny'), (64, 1, 'vim-tiny'),
                (64, 2, 'vim-tiny'), (64, 2, 'deit-tiny')]
    out_dir = benchmark.main([
        '--models', 'deit-tiny', '--resolutions', '48', '32', '--device',
        'cpu', '--max-memory-gb', '0.001', '--rounds', '2', '--out-dir',
        str(tmp_path)
    ])
    _, rows = read_csv(Path(out_dir) / 'results.csv')
    assert [(r['resolution'], r['round'], r['status'], r['note'])
            for r in rows][1:] == [
                ('32', '1', 'skipped', 'oom at 32 in an earlier round'),
                ('48', '0', 'skipped', 'oom at 32 at a smaller size'),
                ('48', '1', 'skipped', 'oom at 32 at a smaller size')]
    assert rows[0]['status'] == 'oom'


def test_an_existing_out_directory_is_refused(benchmark, tmp_path):
    earlier = tmp_path / 'earlier'
    earlier.mkdir()
    (earlier / 'results.csv').write_text('kept')
    with pytest.raises(FileExistsError):
        benchmark.main(['--models', 'vim-tiny', '--out', str(earlier)])
    assert (earlier / 'results.csv').read_text() == 'kept'


def test_ratio_table_from_earlier_results(benchmark, tmp_path, capsys):
    common = dict(resolution=512, batch_size=1, dtype='fp32', mode='train',
                  status='ok')
    results = [
        dict(common, model='base', images_per_s=1., peak_memory_mb=900.,
             working_memory_mb=600.),
        dict(common, model='fast', images_per_s=12., peak_memory_mb=300.,
             working_memory_mb=150.),
        dict(common, model='broken', status='oom'),
    ]
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(dict(meta={}, results=results)))
    assert benchmark.main(
        ['--from-results', str(path), '--baseline', 'base']) is None
    table = capsys.readouterr().out.split('Against base')[1]
    assert 'fast' in table and 'broken' not in table
    assert list(tmp_path.iterdir()) == [path]  # nothing written


@pytest.mark.parametrize('argv, message', [
    (['--models', 'vim-huge'], 'Unknown model'),
    (['--resolutions', '8'], 'at least one 16 px patch'),
    (['--baseline', 'deit-small'], 'is not among --models'),
    (['--repeats', '0'], 'at least 1'),
    (['--rounds', '0'], '--rounds must be at least 1'),
])
def test_bad_arguments_are_named(benchmark, capsys, argv, message):
    with pytest.raises(SystemExit):
        benchmark.parse_args(argv)
    assert message in capsys.readouterr().err


# The GPU machine has torch and mmengine but no mmcv, mmseg, mmdet; the
# figures need matplotlib only once drawn. None is importable here.
WITHOUT_OPTIONAL_LIBRARIES = '''
import runpy, sys
for name in ('mmcv', 'mmseg', 'mmdet', 'matplotlib'):
    sys.modules[name] = None  # importing it raises ImportError
runpy.run_path('tools/analysis_tools/benchmark.py')
from mmvim.analysis.measurement import measure
for model in ('vim-tiny@torch', 'deit-tiny'):
    row = measure(dict(model=model, resolution=32, batch_size=1, dtype='fp32',
                       mode='train', device='cpu', warmup=0, repeats=1,
                       threads=1, max_memory_gb=0))
    assert row['status'] == 'ok', row
print('ok')
'''


@pytest.mark.slow  # a fresh interpreter builds and runs two models
def test_measures_with_torch_and_mmengine_alone(run_tool):
    result = run_tool(['-c', WITHOUT_OPTIONAL_LIBRARIES])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('ok')
