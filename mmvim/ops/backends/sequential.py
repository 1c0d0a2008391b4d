"""The ``sequential`` backend: the plain token loop, autograd for the
backward. The ground truth of the tests and the benchmark's baseline."""
from ..flipping import bidirectional_by_flipping
from ..portable_conv import causal_conv1d_silu_torch as causal_conv1d_silu
from ..portable_scan import selective_scan_sequential as selective_scan

bidirectional_selective_scan = bidirectional_by_flipping(selective_scan)

__all__ = [
    'selective_scan', 'bidirectional_selective_scan', 'causal_conv1d_silu'
]
