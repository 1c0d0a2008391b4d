import pytest
import torch

from mmvim.models.layers.layer_norm_2d import LayerNorm2d
from mmvim.models.necks import SimpleFeaturePyramid


@pytest.mark.parametrize('image_hw', [(256, 256), (192, 320)])
def test_levels_have_expected_strides_and_channels(image_hw):
    neck = SimpleFeaturePyramid(in_channels=192, out_channels=256)
    feature = torch.randn(2, 192, image_hw[0] // 16, image_hw[1] // 16)

    outs = neck((feature, ))

    assert len(outs) == 5
    for out, stride in zip(outs, (4, 8, 16, 32, 64)):
        assert out.shape == (2, 256, image_hw[0] // stride,
                             image_hw[1] // stride)


def test_every_parameter_receives_gradient():
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16)
    outs = neck((torch.randn(1, 32, 4, 6), ))
    sum(out.sum() for out in outs).backward()

    assert all(p.grad is not None for p in neck.parameters())


def test_levels_are_normalised_with_channel_layer_norm():
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16)
    norms = [m for m in neck.modules() if isinstance(m, LayerNorm2d)]
    # two per level (after the 1x1 and 3x3 convs) + one inside the x4 branch
    assert len(norms) == 4 * 2 + 1


@pytest.mark.parametrize('inputs', [
    (torch.randn(1, 32, 4, 4), torch.randn(1, 32, 4, 4)),
    torch.randn(1, 32, 4, 4),
    (torch.randn(1, 16, 4, 4), ),
    (torch.randn(32, 4, 4), ),
])
def test_rejects_inputs_other_than_one_map_of_in_channels(inputs):
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16)
    with pytest.raises(ValueError):
        neck(inputs)


@pytest.mark.parametrize('kwargs', [
    dict(scale_factors=(8.0, 1.0)),
    dict(num_outs=3),
])
def test_rejects_unsupported_configuration(kwargs):
    with pytest.raises(ValueError):
        SimpleFeaturePyramid(in_channels=32, out_channels=16, **kwargs)
