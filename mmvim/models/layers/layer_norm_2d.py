"""LayerNorm over the channel axis of (N, C, H, W) maps."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS


@MODELS.register_module('LN2d')
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm for channels-first maps: ``norm_cfg=dict(type='LN2d')``.

    ``nn.LayerNorm`` (mmcv's ``'LN'``) normalises the last axis, which for a
    conv feature map is the width, so conv necks and heads in the ViTDet
    recipe (LayerNorm everywhere instead of BatchNorm) need this variant.

    The output is a contiguous (N, C, H, W) tensor, not the channel-last
    view the normalisation leaves: mmcv's RoIAlign reads its input's memory
    as (N, C, H, W) whatever its strides, so the pyramid levels this norm
    ends would otherwise reach the RoI heads scrambled.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError('LayerNorm2d expects (N, C, H, W) input, got '
                             f'shape {tuple(x.shape)}')
        x = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight,
            self.bias, self.eps)
        return x.permute(0, 3, 1, 2).contiguous()
