"""The Vim paper's Figure 1 from benchmark results: speed and peak memory
against resolution, one line per model. matplotlib is imported only here,
when a figure is drawn."""
import os
import textwrap
from typing import Dict, List

from .benchmark_results import combine_rounds


def plot_results(results: List[Dict], out_dir: str, title: str) -> List[str]:
    """One PNG per (mode, dtype, batch size), two panels as in the paper's
    Figure 1: images/s and peak memory against resolution, one line per
    model; a measurement's rounds are combined, the bar on its speed spans
    their images/s; an 'x' at the top marks where a model ran out of
    memory."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = {}
    for row in combine_rounds(results):
        groups.setdefault((row['mode'], row['dtype'], row['batch_size']),
                          []).append(row)
    paths = []
    for (mode, dtype, batch), rows in groups.items():
        figure, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
        models = list(dict.fromkeys(row['model'] for row in rows))
        for index, model in enumerate(models):
            color = f'C{index % 10}'
            done = [r for r in rows if r['model'] == model
                    and r['status'] == 'ok']
            sizes = [r['resolution'] for r in done]
            speeds = [r['images_per_s'] for r in done]
            # Rounds (--rounds): the median, a bar over the rounds' range.
            spread = None
            if any('images_per_s_min' in r for r in done):
                spread = [[value - r.get('images_per_s_min', value)
                           for value, r in zip(speeds, done)],
                          [r.get('images_per_s_max', value) - value
                           for value, r in zip(speeds, done)]]
            speed.errorbar(sizes, speeds, yerr=spread, fmt='o-', capsize=3,
                           color=color, label=model)
            memory.plot(sizes, [r['peak_memory_mb'] / 2**10 for r in done],
                        'o-', color=color, label=model)
            for r in rows:
                if r['model'] == model and r['status'] == 'oom':
                    for axis in (speed, memory):
                        axis.plot(r['resolution'], .97, 'x', color=color,
                                  markersize=9,
                                  transform=axis.get_xaxis_transform())
        speeds = [row['images_per_s'] for row in rows if row['status'] == 'ok']
        if speeds and max(speeds) > 20 * min(speeds):
            speed.set_yscale('log')  # e.g. next to the sequential baseline
        resolutions = sorted({row['resolution'] for row in rows})
        memory_label = ('GPU memory (GiB, max allocated)'
                        if rows[0]['device'] == 'cuda' else
                        'peak RSS (GiB)')
        for axis, label in ((speed, 'images / s'), (memory, memory_label)):
            axis.set_xlabel('resolution (px)')
            axis.set_ylabel(label)
            axis.set_xticks(resolutions)
            axis.grid(alpha=.3)
        speed.legend(fontsize=8)
        # Wrapped: a long --title (machine, run, commit) ran off the figure.
        figure.suptitle(
            textwrap.fill(f'{title} - {mode}, {dtype}, batch {batch} '
                          '(x: out of memory)', 110))
        figure.tight_layout()
        path = os.path.join(out_dir, f'speed_memory_{mode}_{dtype}_'
                            f'bs{batch}.png')
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths
