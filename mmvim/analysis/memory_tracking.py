"""Live memory counted per storage: every tensor storage an operator creates
is counted from its creation until it is freed, so the peak of a run and
what was alive at that peak are exact for what passes through the
dispatcher (operators' outputs, views sharing their storage counted once).
What an operator allocates for itself and frees before it returns (oneDNN /
cuDNN workspaces, a kernel's scratch) is not seen.

The same counting runs on real tensors (to measure a step on the CPU) and on
fake ones (:mod:`mmvim.analysis.memory_estimate`, where nothing is
allocated): a fake tensor's storage has the byte size the real one would
have, and it dies when the real one would.
"""
import contextlib
import weakref
from collections import Counter
from typing import Callable, Dict, Hashable, Iterable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveMemory:
    """Bytes alive now and at the peak, in total and per group.

    A group is any hashable label (the estimate uses ``(part, kind,
    layer)``); storages are keyed by their identity and forgotten when
    freed. ``window_peak`` is the peak since it was last set (to
    ``current``), for the peak of one phase of a step.
    """

    def __init__(self):
        self._groups: Dict[int, Hashable] = {}
        self._bytes: Dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.window_peak = 0
        self.by_group: Counter = Counter()
        self.peak_by_group: Dict[Hashable, int] = {}

    def __contains__(self, storage) -> bool:
        return storage._cdata in self._bytes

    def add(self, storage: torch.UntypedStorage, group: Hashable) -> bool:
        """Count ``storage`` from now until it is freed; False if it is
        counted already."""
        key = storage._cdata
        if key in self._bytes:
            return False
        size = storage.nbytes()
        self._bytes[key] = size
        self._groups[key] = group
        self.current += size
        self.by_group[group] += size
        weakref.finalize(storage, self._free, key)
        self._update_peaks()
        return True

    def _update_peaks(self) -> None:
        self.window_peak = max(self.window_peak, self.current)
        if self.current > self.peak:
            self.peak = self.current
            self.peak_by_group = {g: b for g, b in self.by_group.items() if b}

    def add_constant(self, size: int, group: Hashable) -> None:
        """Bytes held for the whole run that no tensor here stands for (a
        buffer the modelled run has and this one does not)."""
        self.current += size
        self.by_group[group] += size
        self._update_peaks()

    def regroup(self, storage: torch.UntypedStorage, group: Hashable) -> None:
        """Move a counted storage to ``group`` (e.g. a backward output that
        became a parameter's gradient)."""
        key = storage._cdata
        if key not in self._bytes or self._groups[key] == group:
            return
        size = self._bytes[key]
        self.by_group[self._groups[key]] -= size
        self.by_group[group] += size
        self._groups[key] = group

    def _free(self, key: int) -> None:
        size = self._bytes.pop(key)
        self.current -= size
        self.by_group[self._groups.pop(key)] -= size


def storages(tensors: Iterable) -> Iterable[torch.UntypedStorage]:
    """The storages of the tensors among ``tensors`` (a pytree)."""
    for value in tree_flatten(tensors)[0]:
        if isinstance(value, torch.Tensor) and value.layout == torch.strided:
            yield value.untyped_storage()


class StorageTracker(TorchDispatchMode):
    """Counts in ``memory`` every storage an operator returns that was not
    counted yet, in the group ``label()`` gives at that moment."""

    def __init__(self, memory: LiveMemory,
                 label: Callable[[], Hashable] = lambda: 'all'):
        super().__init__()
        self.memory = memory
        self.label = label

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        new = [s for s in storages(out) if s not in self.memory]
        if new:
            group = self.label()
            for storage in new:
                self.memory.add(storage, group)
        return out


@contextlib.contextmanager
def allocator_counts() -> Iterator[Dict[str, int]]:
    """What the CPU allocator really hands out inside the block, from the
    profiler's allocation events; the dict it yields gets ``peak``, the
    most bytes alive at once above what was alive before, and ``final``,
    what is still alive at the end. Unlike :class:`StorageTracker` this
    also sees what operators allocate for themselves (scratch,
    workspaces)."""
    from torch.profiler import ProfilerActivity, profile
    counts: Dict[str, int] = {}
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        yield counts
    changes = sorted((event.start_ns(), event.nbytes())
                     for event in prof.profiler.kineto_results.events()
                     if event.name() == '[memory]')
    current = peak = 0
    for _, change in changes:
        current += change
        peak = max(peak, current)
    counts.update(peak=peak, final=current)
