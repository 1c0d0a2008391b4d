import pytest

from mmvim.analysis.speed_memory_plot import plot_results

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def row(model, resolution, status='ok', **fields):
    return dict(model=model, resolution=resolution, status=status,
                mode='inference', dtype='fp32', batch_size=1, device='cpu',
                images_per_s=100. / resolution,
                peak_memory_mb=resolution * 2., **fields)


def test_one_figure_per_mode_dtype_and_batch_with_oom_marks(tmp_path):
    pytest.importorskip('matplotlib')
    results = [
        row('vim', 224), row('vim', 512),
        row('deit', 224), row('deit', 512, status='oom'),
        dict(row('vim', 224), mode='train'),
    ]
    paths = plot_results(results, str(tmp_path), 'test machine')
    assert [p.rsplit('/', 1)[1] for p in paths] == [
        'speed_memory_inference_fp32_bs1.png',
        'speed_memory_train_fp32_bs1.png'
    ]
    for path in paths:
        with open(path, 'rb') as file:
            assert file.read(8) == PNG_MAGIC


def test_rounds_are_drawn_as_their_median_and_range(tmp_path, monkeypatch):
    pytest.importorskip('matplotlib')
    import matplotlib.axes
    drawn = []
    original = matplotlib.axes.Axes.errorbar

    def record(self, x, y, yerr=None, **kwargs):
        drawn.append((list(x), list(y), yerr))
        return original(self, x, y, yerr=yerr, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, 'errorbar', record)
    rounds = [
        dict(row('vim', 224), round=index, images_per_s=speed,
             median_s=1 / speed, min_s=.9 / speed)
        for index, speed in enumerate([1., 4., 2.])
    ]
    plot_results(rounds + [row('deit', 224)], str(tmp_path), 'test machine')
    (sizes, speeds, spread), (_, _, no_spread) = drawn
    assert (sizes, speeds) == ([224], [2.])
    assert spread == [[1.], [2.]]  # down to 1, up to 4 images/s
    assert no_spread is None  # one round: no bar
