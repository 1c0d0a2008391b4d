"""Memory estimates as text: what estimate_memory.py prints (the breakdown
table), and which GPU cards hold a peak."""
from typing import Dict, List, Optional, Sequence

from .memory_estimate import GIB, KINDS, MemoryEstimate

# Common card sizes, in GB as sold (a "24 GB" card has about 24 GiB).
CARDS_GB = (16, 24, 40, 80)
# What a run needs beyond the estimated peak: the CUDA context and the
# cuDNN / cuBLAS workspaces (RESERVE_GIB), and the caching allocator's
# reserve and fragmentation (FRAGMENTATION, a share of the peak).
RESERVE_GIB = 1.0
FRAGMENTATION = 0.10
CARD_MARGIN = (f'a card holds a run when the peak plus '
               f'{FRAGMENTATION:.0%} (the caching allocator\'s reserve and '
               f'fragmentation) plus {RESERVE_GIB:g} GiB (CUDA context, '
               'cuDNN / cuBLAS workspaces) fits in it')


def _unit(peak_bytes: int):
    """(bytes per unit, its name): GiB, or MiB for peaks under 1 GiB."""
    return (GIB, 'GiB') if peak_bytes >= GIB else (2**20, 'MiB')


def needed_bytes(peak_bytes: int) -> float:
    """What a card must have for a run of this peak, margin included."""
    return peak_bytes * (1 + FRAGMENTATION) + RESERVE_GIB * GIB


def cards_holding(peak_bytes: int,
                  cards: Sequence[int] = CARDS_GB) -> List[int]:
    """The card sizes (GB) that hold a run of this peak with the margin."""
    return [card for card in cards if needed_bytes(peak_bytes) <= card * GIB]


def smallest_card(peak_bytes: int) -> str:
    """'24 GB', or '> 80 GB' when no common card holds it."""
    holding = cards_holding(peak_bytes)
    return f'{holding[0]} GB' if holding else f'> {CARDS_GB[-1]} GB'


def describe_settings(estimate: MemoryEstimate) -> List[str]:
    s = estimate.settings
    height, width = s['input_shape']
    ops = s['ops_backend']
    return [
        f'config: {s["config"]} ({s["scope"]})',
        f'step: {"one training step" if s["mode"] == "train" else "inference"}'
        f', {s["batch_per_gpu"]} image(s) of {height}x{width} per GPU, '
        f'{"mixed precision (bfloat16 autocast)" if s["amp"] else "float32"}'
        f', with_cp {"on" if s["with_cp"] else "off"}' +
        (', one GPU of a data-parallel run' if s['data_parallel']
         and s['mode'] == 'train' else ''),
        f'device: {s["device"]}; mmvim ops backend: {ops}',
        f'counted: {s["counted"]}',
    ]


def breakdown_table(estimate: MemoryEstimate) -> str:
    """Parts (rows) by kinds (columns) at the peak."""
    size, unit = _unit(estimate.peak_bytes)

    def text(value):
        return f'{value / size:.{1 if unit == "MiB" else 2}f}'

    by_part_kind = estimate.by('part', 'kind')
    kinds = [k for k in KINDS if any(kind == k for _, kind in by_part_kind)]
    parts = list(estimate.by('part'))
    header = [f'at the peak ({unit})'] + kinds + ['total']
    rows = [header]
    for part in parts:
        sizes = [by_part_kind.get((part, kind), 0) for kind in kinds]
        rows.append([part] + [text(v) if v else '' for v in sizes] +
                    [text(sum(sizes))])
    totals = estimate.by('kind')
    rows.append(['total'] + [text(totals[k]) for k in kinds] +
                [text(estimate.peak_bytes)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return '\n'.join('  '.join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows)


def format_estimate(estimate: MemoryEstimate,
                    measured: Optional[MemoryEstimate] = None) -> str:
    """What estimate_memory.py prints."""
    lines = describe_settings(estimate)
    size, unit = _unit(estimate.peak_bytes)

    def text(value):
        return f'{value / size:.2f}'

    phases = ', '.join(f'{name} {text(value)}'
                       for name, value in estimate.phase_peaks.items())
    lines += ['', f'peak: {text(estimate.peak_bytes)} {unit} '
              f'({estimate.peak_bytes:,} bytes); peak of each phase ({unit}): '
              f'{phases}', '', breakdown_table(estimate), '']
    layers = [(layer, value) for (kind, layer), value in estimate.by(
        'kind', 'layer').items() if kind == 'activations']
    if layers:
        lines.append(f'activations at the peak by layer ({unit}): ' +
                     ', '.join(f'{layer} {text(value)}'
                               for layer, value in layers[:6]))
    if estimate.settings['device'] == 'cuda':
        marks = card_marks(estimate.peak_bytes)
        lines.append('cards: ' + ', '.join(
            f'{card} GB {mark}' for card, mark in marks.items()) +
            f' ({CARD_MARGIN}; tight: only without that margin)')
    lines.append('not counted: ' + '; '.join(estimate.not_counted))
    if measured is not None:
        real = measured.allocator['peak']
        lines += [
            '', f'measured on this CPU (the same step run for real): '
            f'{text(measured.peak_bytes)} {unit} counted per storage '
            f'({_difference(estimate.peak_bytes, measured.peak_bytes)}), '
            f'{text(real)} {unit} from the allocator, operators\' own '
            f'scratch included ({_difference(estimate.peak_bytes, real)})']
    return '\n'.join(lines)


def _difference(estimate: int, measured: int) -> str:
    return f'estimate {(estimate - measured) / measured:+.1%}'


def card_marks(peak_bytes: int) -> Dict[int, str]:
    """Per card size: 'yes' (holds it with the margin), 'tight' (the peak
    alone fits, not with the margin) or 'no'."""
    holding = cards_holding(peak_bytes)
    return {card: 'yes' if card in holding else
            'tight' if peak_bytes <= card * GIB else 'no'
            for card in CARDS_GB}
