"""mmvim's Triton kernels: the selective scan, forward and backward, both
directions of a Vim layer in one launch (see docs/triton.md).

Importing this package imports triton; only :mod:`mmvim.ops.backends.triton`
does, when the registry first asks for that backend.
"""
from .scan import SelectiveScanTriton, interpreting, selective_scan_triton

__all__ = ['SelectiveScanTriton', 'interpreting', 'selective_scan_triton']
