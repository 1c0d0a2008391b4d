"""Timing a callable in this process, for the measurements that compare
several things side by side in one run (the scan alone, ONNX export)."""
import statistics
import time
from typing import Callable


def median_seconds(step: Callable[[], None], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``step`` after one untimed
    warm-up call (first-call set-up, allocator, caches)."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
