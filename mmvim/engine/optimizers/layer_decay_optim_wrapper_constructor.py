"""Layer-wise learning-rate decay for Vision Mamba backbones.

Fine-tuning a pretrained Vim keeps the early layers close to their ImageNet
weights by giving layer ``i`` the learning rate ``lr * decay ** (depth - i)``.
The constructor lives in mmengine's root registry so that segmentation
(mmseg scope) and detection (mmdet scope) configs both find it.
"""
import re
from typing import List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

# Vim parameters that must not be pulled towards zero: the position table and
# the class token are embeddings, and A_log / D (with their backward-direction
# twins) parameterise the state-space dynamics rather than a projection.
NO_DECAY_PARAM_NAMES = frozenset(
    {'pos_embed', 'cls_token', 'A_log', 'A_b_log', 'D', 'D_b'})
EMBEDDING_PREFIXES = ('backbone.patch_embed.', 'backbone.pos_embed',
                      'backbone.cls_token')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class VimLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Groups parameters by Vim depth and by whether they take weight decay.

    ``paramwise_cfg`` keys:

    - ``layer_decay_rate`` (float, required): per-layer lr multiplier.
    - ``num_layers`` (int, default 24): number of Mamba layers.
    - ``reference_name_bug`` (bool, default False): reproduce the public
      reference code's constructor, which looked for ``backbone.blocks.N``
      while Vim names its layers ``backbone.layers.N``, and compared full
      parameter names against ``'pos_embed'`` / ``'cls_token'``. With it, all
      Mamba layers train at the full lr and pos_embed, cls_token, A_log and
      A_b_log receive weight decay; only patch_embed, pos_embed and cls_token
      are slowed down. Use it to compare against the reference numbers.

    Depth ids: patch_embed, pos_embed, cls_token -> 0; ``backbone.layers.N``
    -> N + 1; everything else -> num_layers + 1, i.e. lr scale 1. The final
    ``backbone.norm_f`` sits in that last group: it normalises the output of
    the deepest layer for the new task's neck and head, so like the head (and
    like the final norm in BEiT/ViTDet-style decay) it is not slowed down.
    The lr of depth ``d`` is scaled by
    ``layer_decay_rate ** (num_layers + 1 - d)``.

    Without weight decay: 1-D parameters (norm weights, ``D``, ``D_b``),
    biases, and ``pos_embed``, ``cls_token``, ``A_log``, ``A_b_log``.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg=None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        # Without it mmengine would quietly build one plain parameter group.
        if 'layer_decay_rate' not in self.paramwise_cfg:
            raise ValueError(f'{type(self).__name__} needs '
                             'paramwise_cfg.layer_decay_rate')

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        decay_rate = self.paramwise_cfg['layer_decay_rate']
        num_layers = self.paramwise_cfg.get('num_layers', 24)
        reproduce_bug = self.paramwise_cfg.get('reference_name_bug', False)
        layer_name = 'blocks' if reproduce_bug else 'layers'
        layer_pattern = re.compile(rf'^backbone\.{layer_name}\.(\d+)\.')

        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            depth = self._depth(name, layer_pattern, num_layers)
            decays = self._takes_weight_decay(name, param, reproduce_bug)
            key = (depth, decays)
            if key not in groups:
                groups[key] = dict(
                    params=[],
                    param_names=[],
                    lr=self.base_lr * decay_rate**(num_layers + 1 - depth))
                if not decays:
                    groups[key]['weight_decay'] = 0.
                elif self.base_wd is not None:
                    groups[key]['weight_decay'] = self.base_wd
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)

        for (depth, decays), group in sorted(groups.items()):
            print_log(
                f'layer decay: depth {depth}, lr {group["lr"]:.3g}, '
                f'weight decay {"on" if decays else "off"}: '
                f'{len(group["params"])} parameters', logger='current')
        params.extend(groups[key] for key in sorted(groups))

    @staticmethod
    def _depth(name: str, layer_pattern: re.Pattern, num_layers: int) -> int:
        if name.startswith(EMBEDDING_PREFIXES):
            return 0
        match = layer_pattern.match(name)
        if match:
            return int(match.group(1)) + 1
        return num_layers + 1

    @staticmethod
    def _takes_weight_decay(name: str, param: nn.Parameter,
                            reproduce_bug: bool) -> bool:
        if param.ndim <= 1 or name.endswith('.bias'):
            return False
        # The reference compared the full name ('backbone.pos_embed') with
        # bare names, so its exemption list never matched.
        return reproduce_bug or name.rsplit(
            '.', 1)[-1] not in NO_DECAY_PARAM_NAMES
