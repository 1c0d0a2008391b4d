"""A faster ``tl.associative_scan`` for Triton's CPU interpreter.

The interpreter (``TRITON_INTERPRET=1``, how CI runs mmvim's kernels) scans
with a user combine function one element at a time, calling it in Python
for every entry of the tile: the scan's (BLOCK_D, N, CHUNK) tiles then cost
minutes at the golden-file shapes. A combine function is elementwise, so
calling it once per position along the scanned axis, on whole slices, gives
the same values in CHUNK calls. Only the interpreter is changed, and only
its generic (user-combine) scan; compiled kernels never run this code.
"""
import numpy as np
import triton.language as tl
from triton.runtime import interpreter

# Where the interpreter's own generic scan is kept (tests compare with it).
ORIGINAL_SCAN = 'mmvim_original_generic_scan'


def _scan_slice_by_slice(self, inputs):
    """``ScanOps.generic_scan``: out[0] = in[0], out[i] = combine(out[i-1],
    in[i]) along ``self.axis``, one slice at a time."""
    arrays = [arg.handle.data for arg in inputs]
    outputs = [np.empty_like(array) for array in arrays]
    index = [slice(None)] * arrays[0].ndim
    previous = None
    for position in range(arrays[0].shape[self.axis]):
        index[self.axis] = position
        where = tuple(index)
        current = tuple(
            self.to_tensor(array[where], arg.dtype)
            for array, arg in zip(arrays, inputs))
        if previous is None:
            combined = current
        else:
            combined = self.combine_fn.fn(*previous, *current)
            if not isinstance(combined, tuple):
                combined = (combined, )
        for output, value in zip(outputs, combined):
            output[where] = value.handle.data if isinstance(
                value, tl.core.tensor) else value
        previous = tuple(
            self.to_tensor(output[where], arg.dtype)
            for output, arg in zip(outputs, inputs))
    return [
        self.to_tensor(output, arg.dtype)
        for output, arg in zip(outputs, inputs)
    ]


def speed_up_interpreted_scans() -> bool:
    """Install :func:`_scan_slice_by_slice` in the interpreter (once).

    Returns whether it is installed: a triton whose interpreter lacks
    ``ScanOps.generic_scan`` keeps its own scan (correct, only slower).
    """
    scan_ops = getattr(interpreter, 'ScanOps', None)
    if scan_ops is None or not hasattr(scan_ops, 'generic_scan'):
        return False
    if not hasattr(scan_ops, ORIGINAL_SCAN):
        setattr(scan_ops, ORIGINAL_SCAN, scan_ops.generic_scan)
        scan_ops.generic_scan = _scan_slice_by_slice
    return True
