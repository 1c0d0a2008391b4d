"""mmvim's Triton kernels: the selective scan, forward and backward, both
directions of a Vim layer in one launch (see docs/triton.md), defined as the
operators ``mmvim::selective_scan_triton`` and its backward on import.

Importing this package imports triton; only :mod:`mmvim.ops.backends.triton`
does, when the registry first asks for that backend.
"""
from .scan import interpreting

__all__ = ['interpreting']
