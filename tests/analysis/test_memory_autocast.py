"""CUDA's autocast policy on CPU tensors (mmvim.analysis.memory_autocast)."""
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from mmvim.analysis.memory_autocast import cuda_autocast
from mmvim.analysis.memory_tracking import LiveMemory, StorageTracker


def _dtypes():
    """Output dtypes of operators whose autocast differs between CUDA and
    the CPU, and of some both cast alike."""
    x = torch.randn(2, 8, 4, 4)
    weight = torch.randn(8, 8, 3, 3)
    y = F.conv2d(x, weight, padding=1)
    return dict(
        conv=y.dtype,
        layer_norm=F.layer_norm(y, (4, )).dtype,
        softmax=y.softmax(1).dtype,
        upsample=F.interpolate(y, scale_factor=2, mode='bilinear').dtype,
        sum=y.sum().dtype,
        cat=torch.cat([y, y]).dtype,
        linear=F.linear(x.flatten(1), torch.randn(3, 128)).dtype)


def test_cuda_policy_differs_from_the_cpu_policy():
    low, full = torch.bfloat16, torch.float32
    with cuda_autocast(low):
        cuda = _dtypes()
    with torch.autocast('cpu', dtype=low):
        cpu = _dtypes()
    # CUDA runs norms, softmax, upsampling and sums in float32 ...
    assert cuda == dict(conv=low, layer_norm=full, softmax=full,
                        upsample=full, sum=full, cat=low, linear=low)
    # ... which the CPU leaves in the lower precision.
    assert cpu == dict(conv=low, layer_norm=low, softmax=low, upsample=low,
                       sum=low, cat=low, linear=low)
    # Leaving the block restores the CPU's own policy.
    with torch.autocast('cpu', dtype=low):
        assert _dtypes() == cpu


def test_fake_tensors_follow_the_cuda_policy():
    with FakeTensorMode(), cuda_autocast():
        assert _dtypes()['layer_norm'] == torch.float32


def test_a_weight_is_cast_once_per_region_as_cuda_caches_it():
    linear = torch.nn.Linear(64, 64, bias=False)
    x = torch.randn(8, 64)
    memory = LiveMemory()
    with StorageTracker(memory), cuda_autocast():
        outputs = [linear(x) for _ in range(3)]
    assert all(out.dtype == torch.bfloat16 for out in outputs)
    # One bfloat16 copy of the weight (64 x 64 x 2 bytes), one of x per
    # call (x is not a weight: not cached), three outputs.
    assert memory.peak == 64 * 64 * 2 + 3 * (8 * 64 * 2 + 8 * 64 * 2)
