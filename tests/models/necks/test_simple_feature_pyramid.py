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


def test_levels_read_the_same_through_mmcv_roi_align():
    # The RoI heads pool the levels with mmcv's RoIAlign, which reads a
    # map's memory as contiguous (N, C, H, W): every level must be laid out
    # so, or the heads see other pixels' features.
    from mmcv.ops import roi_align
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16)
    outs = neck((torch.randn(2, 32, 4, 6), ))
    rois = torch.tensor([[0, 8., 8., 40., 56.], [1, 0., 16., 64., 48.]])
    for out, stride in zip(outs, (4, 8, 16, 32, 64)):
        assert out.is_contiguous()
        torch.testing.assert_close(
            roi_align(out, rois, (7, 7), 1 / stride, 0, 'avg', True),
            roi_align(out.clone(memory_format=torch.contiguous_format),
                      rois, (7, 7), 1 / stride, 0, 'avg', True))


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
