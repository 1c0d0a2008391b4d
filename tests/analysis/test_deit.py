import torch

from mmvim.analysis.deit import DEIT_ARCHS, DeiT, build_deit


def test_builtin_deit_has_the_deit_sizes():
    # timm's deit_tiny/small_patch16_224 minus the 1000-class head.
    tiny = DeiT(*DEIT_ARCHS['tiny'], img_size=224)
    small = DeiT(*DEIT_ARCHS['small'], img_size=224)
    assert sum(p.numel() for p in tiny.parameters()) == 5_717_416 - 193_000
    assert sum(p.numel() for p in small.parameters()) == 22_050_664 - 385_000
    at_64 = DeiT(*DEIT_ARCHS['tiny'], img_size=64)
    assert at_64(torch.zeros(2, 3, 64, 64)).shape == (2, 17, 192)


def test_build_deit_says_which_implementation_it_built():
    model, implementation = build_deit('tiny', 32)
    assert implementation.startswith(('timm ', 'built-in sdpa'))
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 5, 192)
