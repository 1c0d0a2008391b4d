"""The ``torch`` backend: mmvim's portable chunked scan, on any device."""
from ..flipping import bidirectional_by_flipping
from ..portable_conv import causal_conv1d_silu_torch as causal_conv1d_silu
from ..portable_scan import selective_scan_torch as selective_scan

bidirectional_selective_scan = bidirectional_by_flipping(selective_scan)

__all__ = [
    'selective_scan', 'bidirectional_selective_scan', 'causal_conv1d_silu'
]
