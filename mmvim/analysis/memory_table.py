"""The memory tables of docs/memory.md and the README: every shipped
config's estimated peak per GPU, in float32 and mixed precision, with and
without gradient checkpointing, at the recipe's batch per GPU and at 1, 2
and 4, and the cards that hold it. The estimates run one after the other
in this process (:func:`run_grid`); the tables are rendered from their
results, so they can be redrawn without estimating again."""
import glob
import os
import re
from typing import Callable, Dict, List, Sequence

from .memory_estimate import (EstimateSettings, default_batch_size,
                              estimate_memory, load_config)
from .memory_report import smallest_card

BATCHES = (1, 2, 4)
# (amp, with_cp) of each column, in table order.
VARIANTS = ((False, False), (False, True), (True, False), (True, True))


def shipped_configs(root: str = '.') -> List[str]:
    """Every config under configs/<dataset>/ (not the _base_ pieces), in a
    stable order."""
    return sorted(os.path.normpath(path) for path in glob.glob(
        os.path.join(root, 'configs', '*', '*.py'))
        if not os.path.basename(os.path.dirname(path)).startswith('_'))


def grid(config: str) -> List[EstimateSettings]:
    """The training estimates of one config's table, then its inference
    at batch 1."""
    cfg = load_config(EstimateSettings(config))
    recipe = default_batch_size(cfg, 'train')
    batches = sorted(set(BATCHES) | {recipe})
    settings = [
        EstimateSettings(config, batch_per_gpu=batch, amp=amp,
                         cfg_options={'model.backbone.with_cp': with_cp})
        for batch in batches for amp, with_cp in VARIANTS
    ]
    return settings + [EstimateSettings(config, mode='test',
                                        batch_per_gpu=1)]


def result_row(settings: EstimateSettings, estimate) -> Dict:
    return dict(config=settings.config, mode=settings.mode,
                batch_per_gpu=estimate.settings['batch_per_gpu'],
                amp=settings.amp,
                with_cp=estimate.settings['with_cp'],
                input_shape=estimate.settings['input_shape'],
                ops_backend=estimate.settings['ops_backend'],
                peak_bytes=estimate.peak_bytes)


def run_grid(configs: Sequence[str],
             progress: Callable[[str], None] = print) -> List[Dict]:
    """Every estimate of the tables of ``configs``, sequentially."""
    rows = []
    for config in configs:
        for settings in grid(config):
            estimate = estimate_memory(settings)
            rows.append(result_row(settings, estimate))
            progress(f'{config} {settings.mode} batch '
                     f'{rows[-1]["batch_per_gpu"]} amp {settings.amp} '
                     f'with_cp {rows[-1]["with_cp"]}: '
                     f'{estimate.peak_bytes / 2**30:.2f} GiB')
    return rows


def _cell(peak_bytes: int) -> str:
    return f'{peak_bytes / 2**30:.2f} ({smallest_card(peak_bytes)})'


def _recipe_batch(config: str) -> int:
    return default_batch_size(load_config(EstimateSettings(config)),
                              'train')


def docs_tables(rows: List[Dict]) -> str:
    """One table per config: training peaks (GiB, and the smallest card
    that holds them) by batch per GPU and precision / checkpointing, then
    the inference peak."""
    lines = []
    for config in dict.fromkeys(row['config'] for row in rows):
        own = [row for row in rows if row['config'] == config]
        train = [row for row in own if row['mode'] == 'train']
        recipe = _recipe_batch(config)
        height, width = train[0]['input_shape']
        lines += [f'#### `{os.path.normpath(config)}`', '',
                  f'{height}x{width} crops; training step per GPU, peak GiB '
                  '(smallest card that holds it):', '',
                  '| batch per GPU | fp32 | fp32, with_cp | amp | '
                  'amp, with_cp |', '|---|---|---|---|---|']
        for batch in sorted({row['batch_per_gpu'] for row in train}):
            cells = []
            for amp, with_cp in VARIANTS:
                match = [row for row in train if row['batch_per_gpu'] ==
                         batch and row['amp'] == amp and
                         row['with_cp'] == with_cp]
                cells.append(_cell(match[0]['peak_bytes']))
            label = f'**{batch}** (recipe)' if batch == recipe else \
                str(batch)
            lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
        for row in own:
            if row['mode'] == 'test':
                height, width = row['input_shape']
                lines += ['', f'Inference (fp32, one {height}x{width} '
                          f'image): {_cell(row["peak_bytes"])}.']
        lines.append('')
    return '\n'.join(lines).rstrip() + '\n'


def readme_table(rows: List[Dict]) -> str:
    """The README's short table: each full config at its recipe's batch
    per GPU, fp32 and amp, and the smallest card that holds each."""
    lines = ['| config | batch per GPU | fp32 | amp |', '|---|---|---|---|']
    for config in dict.fromkeys(row['config'] for row in rows):
        if 'quickstart' in os.path.basename(config):
            continue
        recipe = _recipe_batch(config)
        peaks = {row['amp']: row['peak_bytes'] for row in rows
                 if row['config'] == config and row['mode'] == 'train'
                 and row['batch_per_gpu'] == recipe and not row['with_cp']}
        lines.append(f'| `{os.path.normpath(config)}` | {recipe} | '
                     f'{_cell(peaks[False])} | {_cell(peaks[True])} |')
    return '\n'.join(lines) + '\n'


def replace_between_markers(text: str, name: str, content: str) -> str:
    """``text`` with what lies between ``<!-- name:start -->`` and
    ``<!-- name:end -->`` replaced by ``content``; a ValueError when the
    markers are missing."""
    pattern = re.compile(
        rf'(<!-- {re.escape(name)}:start -->\n).*?(<!-- '
        rf'{re.escape(name)}:end -->)', re.S)
    if not pattern.search(text):
        raise ValueError(f'no <!-- {name}:start --> ... <!-- {name}:end --> '
                         'markers')
    return pattern.sub(lambda m: m.group(1) + content + m.group(2), text)
