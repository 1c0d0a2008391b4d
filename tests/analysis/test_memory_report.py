"""What estimate_memory.py prints (mmvim.analysis.memory_report)."""
from mmvim.analysis.memory_estimate import GIB, MemoryEstimate
from mmvim.analysis.memory_report import format_estimate

SETTINGS = dict(config='configs/x.py', scope='mmseg', mode='train',
                batch_per_gpu=8, input_shape=[512, 512], amp=False,
                with_cp=False, data_parallel=True, device='cuda',
                ops_backend='triton', counted='fake tensors')


def _estimate(at_peak, **settings):
    return MemoryEstimate(
        peak_bytes=sum(at_peak.values()), at_peak=at_peak,
        phase_peaks=dict(forward=GIB, backward=sum(at_peak.values()),
                         optimizer=GIB // 2),
        settings=dict(SETTINGS, **settings))


def test_breakdown_by_part_and_kind_with_totals_and_cards():
    text = format_estimate(_estimate({
        ('backbone', 'activations', 'BiMambaMixer'): 12 * GIB,
        ('backbone', 'weights', '-'): GIB,
        ('decode_head', 'backward', '-'): 2 * GIB,
    }))
    lines = text.splitlines()
    assert 'peak: 15.00 GiB' in text
    assert 'mmvim ops backend: triton' in text
    header = next(line for line in lines if line.startswith('at the peak'))
    assert header.split()[4:] == ['weights', 'activations', 'backward',
                                  'total']
    assert lines[lines.index(header) + 1].split() == [
        'backbone', '1.00', '12.00', '13.00']
    assert next(line for line in lines
                if line.startswith('total')).split()[-1] == '15.00'
    assert 'activations at the peak by layer (GiB): BiMambaMixer 12.00' in \
        text
    # 15 GiB + 10% + 1 GiB = 17.5 GiB: a 16 GB card only without the margin.
    assert 'cards: 16 GB tight, 24 GB yes, 40 GB yes, 80 GB yes' in text


def test_small_peaks_in_mib_and_no_cards_for_a_cpu():
    text = format_estimate(_estimate(
        {('backbone', 'weights', '-'): 3 * 2**20}, device='cpu',
        ops_backend='cpu'))
    assert 'peak: 3.00 MiB' in text and 'cards:' not in text
