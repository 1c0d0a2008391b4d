"""Layer-wise learning-rate decay for Vision Mamba backbones.

Fine-tuning a pretrained Vim keeps the early layers close to their ImageNet
weights by giving depth ``d`` the learning rate ``lr * decay ** (top - d)``.
Which parameter sits at which depth, and which take no weight decay, the
backbone declares itself (``get_layer_depth()``, ``no_weight_decay()``); the
constructor only applies it. It lives in mmengine's root registry so that
segmentation (mmseg scope) and detection (mmdet scope) configs both find it.
"""
from typing import List, Set, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class VimLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Groups parameters by backbone depth and by whether they take weight
    decay.

    The model must hold exactly one module with ``get_layer_depth(name,
    prefix)`` returning ``(depth, number of depths)`` (``VisionMamba`` does);
    the number of layers comes from it. Parameters outside that module (neck,
    heads) are at the top depth, lr scale 1. Without weight decay: 1-D
    parameters (norm weights), biases, and every name a module's
    ``no_weight_decay()`` lists (relative to that module).

    ``paramwise_cfg`` keys:

    - ``layer_decay_rate`` (float, required): per-depth lr multiplier.
    - ``reference_name_bug`` (bool, default False): reproduce the public
      reference code's constructor, which looked for ``backbone.blocks.N``
      while Vim names its layers ``backbone.layers.N``, and compared full
      parameter names against ``'pos_embed'`` / ``'cls_token'``. With it, all
      Mamba layers train at the full lr and pos_embed, cls_token, A_log and
      A_b_log receive weight decay; only the embeddings (depth 0) are slowed
      down. Use it to compare against the reference numbers.
    - ``num_layers`` (int, optional): checked against the model's depth,
      which is what is used; a config that restates it wrongly is an error.
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
        reproduce_bug = self.paramwise_cfg.get('reference_name_bug', False)
        prefix, backbone = self._layered_module(module)
        trainable = [(name, param) for name, param in module.named_parameters()
                     if param.requires_grad]
        depths = {
            name: backbone.get_layer_depth(name, prefix)
            for name, _ in trainable
        }
        num_depths = max(total for _, total in depths.values())
        stated = self.paramwise_cfg.get('num_layers')
        if stated is not None and stated != num_depths - 2:
            raise ValueError(
                f'paramwise_cfg.num_layers={stated} but the model '
                f'({type(backbone).__name__} at {prefix!r}) has '
                f'{num_depths - 2} layers; remove num_layers, the depth is '
                'read from the model.')
        no_decay = set() if reproduce_bug else self._no_weight_decay(module)

        groups = {}
        for name, param in trainable:
            depth = depths[name][0]
            if reproduce_bug and depth > 0:
                depth = num_depths - 1
            decays = not (param.ndim <= 1 or name.endswith('.bias')
                          or name in no_decay)
            key = (depth, decays)
            if key not in groups:
                groups[key] = dict(
                    params=[],
                    param_names=[],
                    lr=self.base_lr * decay_rate**(num_depths - 1 - depth))
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
    def _layered_module(model: nn.Module) -> Tuple[str, nn.Module]:
        """The one submodule that declares its layer depths, and its name
        prefix (``'backbone.'`` in a segmentor or a detector)."""
        found = [(name, sub) for name, sub in model.named_modules()
                 if callable(getattr(sub, 'get_layer_depth', None))]
        if len(found) != 1:
            names = [name or '(the model)' for name, _ in found]
            raise ValueError(
                'Layer-wise lr decay needs exactly one module that declares '
                'get_layer_depth() (a VisionMamba backbone); found '
                f'{len(found)}: {names}.')
        name, sub = found[0]
        return (name + '.' if name else ''), sub

    @staticmethod
    def _no_weight_decay(model: nn.Module) -> Set[str]:
        """Full names of the parameters that modules declare decay-free."""
        names = set()
        for prefix, sub in model.named_modules():
            declared = getattr(sub, 'no_weight_decay', None)
            if callable(declared):
                names |= {
                    f'{prefix}.{name}' if prefix else name
                    for name in declared()
                }
        return names
