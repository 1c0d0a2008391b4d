"""Live memory counted per storage (mmvim.analysis.memory_tracking), on real
and on fake tensors."""
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from mmvim.analysis.memory_tracking import (LiveMemory, StorageTracker,
                                            allocator_counts)

MIB = 2**20


def test_a_storage_is_counted_once_while_it_lives():
    memory = LiveMemory()
    tensor = torch.empty(MIB // 4)
    assert memory.add(tensor.untyped_storage(), 'a')
    view = tensor[:10]
    assert not memory.add(view.untyped_storage(), 'b')
    assert memory.current == MIB and memory.by_group == {'a': MIB}
    del tensor
    assert memory.current == MIB  # the view keeps the storage alive
    del view
    assert memory.current == 0 and memory.peak == MIB
    assert memory.peak_by_group == {'a': MIB}


def test_regroup_and_constants_move_the_counts():
    memory = LiveMemory()
    tensor = torch.empty(256)
    memory.add(tensor.untyped_storage(), 'backward')
    memory.regroup(tensor.untyped_storage(), 'gradients')
    memory.add_constant(4096, 'buckets')
    assert memory.by_group == {'backward': 0, 'gradients': 1024,
                               'buckets': 4096}
    assert memory.peak == 5120
    assert memory.peak_by_group == {'gradients': 1024, 'buckets': 4096}


def _linear_step(x, weight):
    """(x @ weight.T).relu() * 2, summed, backward: 64x512 activations."""
    (torch.nn.functional.linear(x, weight).relu() * 2).sum().backward()


def _tracked_peak(x, weight):
    memory = LiveMemory()
    for tensor in (x, weight):
        memory.add(tensor.untyped_storage(), 'inputs')
    with StorageTracker(memory):
        _linear_step(x, weight)
    return memory.peak, memory.current


def test_fake_and_real_steps_count_the_same_bytes():
    real = _tracked_peak(torch.randn(64, 256),
                         torch.randn(512, 256, requires_grad=True))
    with FakeTensorMode():
        fake = _tracked_peak(torch.empty(64, 256),
                             torch.empty(512, 256, requires_grad=True))
    # x and weight (64 + 512 rows of 256), then at the peak, when the
    # weight's gradient (512 x 256) is computed: the gradient of the linear
    # output (64 x 512; the relu output it was computed from is freed by
    # then), the loss and its gradient (4 bytes each).
    expected = 4 * (64 * 256 + 512 * 256 + 64 * 512 + 512 * 256) + 4 + 4
    # What stays: the inputs and the weight's gradient.
    assert real == fake == (expected, 4 * (64 + 512 + 512) * 256)


def test_the_allocator_sees_what_dispatch_does_not_return():
    with allocator_counts() as counts:
        scratch = torch.empty(MIB)
        del scratch
        kept = torch.empty(MIB // 4)
    assert counts == dict(peak=4 * MIB, final=MIB)
    del kept
