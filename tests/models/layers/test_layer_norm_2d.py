import pytest
import torch
import torch.nn.functional as F

from mmvim.models.layers.layer_norm_2d import LayerNorm2d


def test_normalises_each_pixel_over_channels():
    norm = LayerNorm2d(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 8, 3, 5)

    expected = F.layer_norm(
        x.permute(0, 2, 3, 1), (8, ), norm.weight, norm.bias,
        eps=norm.eps).permute(0, 3, 1, 2)

    torch.testing.assert_close(norm(x), expected)
    # per pixel, the un-affine output has zero mean over channels
    plain = LayerNorm2d(8, elementwise_affine=False)(x)
    torch.testing.assert_close(
        plain.mean(dim=1), torch.zeros(2, 3, 5), atol=1e-5, rtol=0)


@pytest.mark.parametrize('memory_format',
                         [torch.contiguous_format, torch.channels_last])
def test_output_is_contiguous_nchw(memory_format):
    # mmcv's RoIAlign reads (N, C, H, W) memory without looking at strides:
    # a channel-last output fed to it gives other pixels' features.
    x = torch.randn(2, 8, 3, 5).contiguous(memory_format=memory_format)
    out = LayerNorm2d(8)(x)
    assert out.is_contiguous()
    torch.testing.assert_close(out, LayerNorm2d(8)(x.contiguous()))


def test_builds_from_norm_cfg():
    from mmcv.cnn import build_norm_layer
    _, norm = build_norm_layer(dict(type='LN2d'), 16)
    assert isinstance(norm, LayerNorm2d) and norm.normalized_shape == (16, )


def test_rejects_non_4d_input():
    with pytest.raises(ValueError):
        LayerNorm2d(8)(torch.randn(2, 8, 3))
