def test_scan_benchmark_reports_every_backend_and_the_limits(
        tool_module, capsys):
    benchmark_scan = tool_module('tools/analysis_tools/benchmark_scan.py')
    limits, rows = benchmark_scan.main(
        ['--backends', 'torch', 'sequential', '--lengths', '3', '9',
         '--repeats', '1', '--train'])
    assert limits['sgemm_gflops'] > 0 and limits['copy_gbps'] > 0
    assert [(r['length'], r['backend']) for r in rows] == [
        (3, 'torch'), (3, 'sequential'), (9, 'torch'), (9, 'sequential')]
    assert all(r['gupdates_per_s'] > 0 and r['mode'] == 'train' for r in rows)
    assert 'G state updates/s' in capsys.readouterr().out


def test_scan_benchmark_takes_bf16_activations(tool_module, capsys):
    benchmark_scan = tool_module('tools/analysis_tools/benchmark_scan.py')
    _, rows = benchmark_scan.main(['--backends', 'torch', '--lengths', '3',
                                   '--repeats', '1', '--dtype', 'bf16'])
    assert [r['length'] for r in rows] == [3]
    assert 'inference bf16 L=3' in capsys.readouterr().out


def test_scan_benchmark_parts_times_each_call(tool_module, capsys):
    benchmark_scan = tool_module('tools/analysis_tools/benchmark_scan.py')
    _, rows = benchmark_scan.main(['--backends', 'torch', '--lengths', '3',
                                   '5', '--repeats', '1', '--parts'])
    calls = ('mixer call', 'delta given whole', 'delta whole, no gate')
    assert [(r['length'], r['call']) for r in rows] == [
        (length, call) for length in (3, 5) for call in calls]
    out = capsys.readouterr().out
    assert all(call in out for call in calls)
