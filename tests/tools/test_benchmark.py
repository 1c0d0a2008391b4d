import csv
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[2] / 'tools' / 'analysis_tools'))
import benchmark  # noqa: E402

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def read_csv(path):
    with open(path, newline='') as file:
        reader = csv.DictReader(file)
        return reader.fieldnames, list(reader)


def test_model_names_parse_and_unknown_ones_fail():
    spec = benchmark.parse_model('vim-small-twocall@sequential')
    assert (spec.family, spec.arch, spec.two_call,
            spec.backend) == ('vim', 'small', True, 'sequential')
    assert benchmark.parse_model('vim-tiny@cpu').backend == 'cpu'
    assert benchmark.parse_model('deit-tiny').family == 'deit'
    assert benchmark.parse_model('config:a/b.py@cuda').config == 'a/b.py'
    for bad in ('vim-huge', 'vim-tiny-fast', 'deit-base', 'deit-tiny@cuda',
                'vim-tiny@gpu', 'vim-tiny-sequential', 'resnet50'):
        with pytest.raises(ValueError):
            benchmark.parse_model(bad)


def test_run_writes_csv_json_png_and_ratios(tmp_path, capsys):
    out_dir = benchmark.main([
        '--models', 'vim-tiny@torch', 'vim-tiny@sequential', '--resolutions',
        '32',
        '--modes', 'train', '--device', 'cpu', '--threads', '1', '--warmup',
        '0', '--repeats',
        '1', '--baseline', 'vim-tiny@sequential', '--out-dir',
        str(tmp_path)
    ])
    out = Path(out_dir)
    assert out.parent == tmp_path
    columns, rows = read_csv(out / 'results.csv')
    assert tuple(columns) == benchmark.COLUMNS
    assert [row['status'] for row in rows] == ['ok', 'ok'], rows
    assert [row['backend'] for row in rows] == ['torch', 'sequential']
    assert all(float(row['images_per_s']) > 0 for row in rows)
    assert all(float(row['peak_memory_mb']) > 0 for row in rows)
    assert all(row['memory_kind'] == 'cpu_peak_rss' for row in rows)
    saved = json.loads((out / 'results.json').read_text())
    assert 'vim-tiny@sequential' in saved['meta']['command']
    assert len(saved['results']) == 2
    _, ratios = read_csv(out / 'ratios.csv')
    assert [r['model'] for r in ratios] == ['vim-tiny@torch']
    assert float(ratios[0]['speedup']) == pytest.approx(
        float(rows[0]['images_per_s']) / float(rows[1]['images_per_s']))
    plot = out / 'speed_memory_train_fp32_bs1.png'
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert 'Against vim-tiny@sequential' in capsys.readouterr().out


def test_memory_cap_is_recorded_as_oom_and_larger_sizes_skipped(tmp_path):
    # Any Python process is above 1 MB: the watchdog kills it at once.
    out_dir = benchmark.main([
        '--models', 'deit-tiny', '--resolutions', '48', '32', '--device',
        'cpu', '--max-memory-gb', '0.001', '--out-dir',
        str(tmp_path)
    ])
    _, rows = read_csv(Path(out_dir) / 'results.csv')
    statuses = [(r['resolution'], r['status']) for r in rows]
    assert statuses == [('32', 'oom'), ('48', 'skipped')]
    assert rows[0]['memory_kind'] == 'cpu_sampled_rss'
    assert float(rows[0]['peak_memory_mb']) > 1


def test_out_of_memory_inside_a_measurement_is_a_result(monkeypatch):

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate')

    monkeypatch.setattr(benchmark, 'build_workload', exhausted)
    task = dict(model='vim-tiny', resolution=32, batch_size=1, dtype='fp32',
                mode='train', device='cpu', warmup=0, repeats=1, threads=0,
                max_memory_gb=0)
    row = benchmark.measure(task)
    assert row['status'] == 'oom'
    assert 'OutOfMemoryError' in row['note']
    assert benchmark.is_out_of_memory(
        RuntimeError('DefaultCPUAllocator: not enough memory'))
    assert not benchmark.is_out_of_memory(RuntimeError('shape mismatch'))


def test_earlier_results_are_never_overwritten(tmp_path):
    args = benchmark.parse_args(['--out-dir', str(tmp_path)])
    first, second = (benchmark.new_output_dir(args) for _ in range(2))
    assert first != second
    args = benchmark.parse_args(['--out', first])
    with pytest.raises(FileExistsError):
        benchmark.new_output_dir(args)


def test_ratio_table_from_earlier_results(tmp_path, capsys):
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
    (ratio, ) = benchmark.ratio_rows(results, 'base')
    assert (ratio['speedup'], ratio['working_memory_ratio']) == (12., .25)
    assert ratio['peak_memory_ratio'] == pytest.approx(1 / 3)
    table = capsys.readouterr().out.split('Against base')[1]
    assert 'fast' in table and 'broken' not in table


def test_builtin_deit_has_the_deit_sizes():
    # timm's deit_tiny/small_patch16_224 minus the 1000-class head.
    tiny = benchmark.DeiT(192, 3, img_size=224)
    small = benchmark.DeiT(384, 6, img_size=224)
    assert sum(p.numel() for p in tiny.parameters()) == 5_717_416 - 193_000
    assert sum(p.numel() for p in small.parameters()) == 22_050_664 - 385_000
    at_64 = benchmark.DeiT(192, 3, img_size=64)
    assert at_64(torch.zeros(2, 3, 64, 64)).shape == (2, 17, 192)
