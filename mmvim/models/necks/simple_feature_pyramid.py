"""ViTDet-style simple feature pyramid for plain (single-scale) backbones.

mmcv is imported when the neck is built, not when mmvim is imported: the
backbone and the ops need only torch and mmengine, and this neck is only
used inside mmdet detectors, which need mmcv anyway.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from ..layers.layer_norm_2d import LayerNorm2d  # noqa: F401  registers 'LN2d'


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """Builds a multi-stride pyramid from a single stride-16 map (ViTDet).

    Vim, like ViT, keeps one resolution through all its layers, while
    detection heads want maps at several strides. Following ViTDet (Li et
    al., ECCV 2022), every level is made from the last map alone: x4 by two
    stride-2 deconvolutions with a norm and activation between them, x2 by
    one deconvolution, x1 as is, x0.5 by 2x2 max-pooling; a 1x1 conv and a
    3x3 conv, each followed by a norm, then bring every level to
    ``out_channels``. Levels beyond ``len(scale_factors)`` are subsampled
    from the coarsest one (max-pool, kernel 1, stride 2), the extra level
    FPN gives the RPN.

    Args:
        in_channels: channels of the backbone map (192 for Vim-Ti).
        out_channels: channels of every output level.
        scale_factors: resize factor of each level, finest first; each is
            one of 4, 2, 1 and 0.5.
        num_outs: number of output levels, at least ``len(scale_factors)``.
        norm_cfg: norm after each conv and between the two x4 deconvolutions.
        act_cfg: activation between the two x4 deconvolutions.
        init_cfg: mmengine initialisation config.
    """

    SUPPORTED_SCALE_FACTORS = (4.0, 2.0, 1.0, 0.5)

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_outs: int = 5,
                 norm_cfg: dict = dict(type='LN2d'),
                 act_cfg: dict = dict(type='GELU'),
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        from mmcv.cnn import ConvModule
        unsupported = [s for s in scale_factors
                       if s not in self.SUPPORTED_SCALE_FACTORS]
        if unsupported:
            raise ValueError(
                f'scale factors {unsupported} are not supported; use '
                f'{self.SUPPORTED_SCALE_FACTORS}')
        if num_outs < len(scale_factors):
            raise ValueError(
                f'num_outs={num_outs} is fewer than the '
                f'{len(scale_factors)} scale factors')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.levels = nn.ModuleList()
        for scale in scale_factors:
            resize, resized_channels = self._build_resize(
                scale, in_channels, norm_cfg, act_cfg)
            self.levels.append(
                nn.Sequential(
                    *resize,
                    ConvModule(resized_channels, out_channels, 1,
                               norm_cfg=norm_cfg, act_cfg=None),
                    ConvModule(out_channels, out_channels, 3, padding=1,
                               norm_cfg=norm_cfg, act_cfg=None)))

    @staticmethod
    def _build_resize(scale: float, channels: int, norm_cfg: dict,
                      act_cfg: dict) -> Tuple[List[nn.Module], int]:
        """Layers that resize the map by ``scale``, and their out channels.

        Upsampling halves the channels at each x2 step, as in ViTDet, which
        keeps the stride-4 level cheap.
        """
        from mmcv.cnn import build_activation_layer, build_norm_layer
        if scale == 4.0:
            return [
                nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
                build_norm_layer(norm_cfg, channels // 2)[1],
                build_activation_layer(act_cfg),
                nn.ConvTranspose2d(channels // 2, channels // 4, 2, stride=2),
            ], channels // 4
        if scale == 2.0:
            return [nn.ConvTranspose2d(channels, channels // 2, 2,
                                       stride=2)], channels // 2
        if scale == 1.0:
            return [], channels
        return [nn.MaxPool2d(kernel_size=2, stride=2)], channels

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor]:
        """Maps the backbone's one-element output tuple to the pyramid levels.

        Returns ``num_outs`` maps of ``out_channels`` channels, finest first.
        """
        if isinstance(inputs, torch.Tensor) or len(inputs) != 1:
            got = ('a bare tensor' if isinstance(inputs, torch.Tensor) else
                   f'{len(inputs)} maps')
            raise ValueError(
                'SimpleFeaturePyramid expects a sequence holding exactly one '
                'feature map (set the backbone to output one layer), got '
                f'{got}')
        feature = inputs[0]
        if feature.dim() != 4 or feature.shape[1] != self.in_channels:
            raise ValueError(
                f'expected a (N, {self.in_channels}, H, W) map, got shape '
                f'{tuple(feature.shape)}')
        outs = [level(feature) for level in self.levels]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
