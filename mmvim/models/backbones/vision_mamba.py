"""Vision Mamba (Vim) as a dense-prediction backbone."""
import math
from typing import Dict, Optional, Sequence, Set, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn

from ..layers import RMSNorm, VimBlock, resize_pos_embed
from ..utils import load_checkpoint_state_dict

# The input size all released Vim checkpoints were trained at (ImageNet).
RELEASED_IMG_SIZE = (224, 224)
# The entry of a VisionMamba's state-dict metadata (``_metadata``, kept by
# torch.save and by mmengine's checkpoints) naming the patch grid its
# pos_embed is for.
GRID_METADATA_KEY = 'patch_grid'
# Keys of a released classification checkpoint that no backbone has.
CLASSIFIER_PREFIXES = ('head.', 'head_dist.')


def _pair(value) -> Tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _describe(keys, limit=10) -> str:
    keys = sorted(keys)
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def _require_positive(**values):
    for name, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f'{name} must be a positive integer, got '
                             f'{value!r}.')


def checkpoint_grid(model: 'VisionMamba', num_patches: int,
                    stated: Optional[Dict] = None) -> Tuple[int, int]:
    """The patch grid a checkpoint's ``pos_embed`` of ``num_patches`` rows
    (class token excluded) was trained for.

    Never guessed from the row count alone. The file's own word comes
    first (``stated``: the ``patch_grid`` mmvim writes into the state dict
    of every VisionMamba, or the ``img_size`` of a released file's
    ``args.input_size``); then ``model.pretrain_img_size``; otherwise this
    model's own grid (a file this model saved) or the grid of the released
    models' 224x224 pre-training, whichever alone has that many patches.
    Two of them with that many patches (7x28 and 14x14 both have 196) or
    none is an error naming ``pretrain_img_size``.
    """
    stated = stated or {}
    if stated.get(GRID_METADATA_KEY) is not None:
        said = tuple(stated[GRID_METADATA_KEY])
        source = 'the grid the file states'
    elif stated.get('img_size') is not None:
        said = model.grid_for(_pair(stated['img_size']))
        source = 'the grid of the input size the file states'
    else:
        said = None
    if said is not None:
        if said[0] * said[1] != num_patches:
            raise ValueError(
                f'The checkpoint\'s pos_embed has {num_patches} patch rows '
                f'but {source} is {said[0]}x{said[1]}: the file is damaged '
                'or was saved with another patch size or stride.')
        configured = (None if model.pretrain_img_size is None else
                      model.grid_for(model.pretrain_img_size))
        if configured not in (None, said):
            raise ValueError(
                f'pretrain_img_size {model.pretrain_img_size} gives a '
                f'{configured[0]}x{configured[1]} grid but {source} is '
                f'{said[0]}x{said[1]}: remove pretrain_img_size (the file '
                'knows its grid) or fix it.')
        return said
    if model.pretrain_img_size is not None:
        known = {'pretrain_img_size': model.pretrain_img_size}
    else:
        known = {'img_size': model.img_size,
                 'the released models\' size': RELEASED_IMG_SIZE}
    described = {
        name: (model.grid_for(size), f'{model.grid_for(size)[0]}x'
               f'{model.grid_for(size)[1]} for {name} {size[0]}x{size[1]}')
        for name, size in known.items()
    }
    fitting = {grid: text for grid, text in described.values()
               if grid[0] * grid[1] == num_patches}
    if len(fitting) == 1:
        return next(iter(fitting))
    if fitting:
        raise ValueError(
            f'The checkpoint\'s pos_embed has {num_patches} patch rows, '
            f'which fits several grids ({", ".join(fitting.values())}) and '
            'the file does not say which. Set the backbone\'s '
            'pretrain_img_size to the input size the checkpoint was trained '
            'at.')
    options = ', '.join(text for _, text in described.values())
    raise ValueError(
        f'The checkpoint\'s pos_embed has {num_patches} patch rows, which '
        f'fits none of the known grids ({options}, patch '
        f'{model.patch_size}/{model.stride}). Set the backbone\'s '
        'pretrain_img_size to the input size the checkpoint was trained at.')


def _state_patch_grid(module: 'VisionMamba', state_dict, prefix: str,
                      local_metadata: dict) -> None:
    """State-dict post-hook: every state dict of the backbone says which
    patch grid its ``pos_embed`` is for (:data:`GRID_METADATA_KEY`)."""
    local_metadata[GRID_METADATA_KEY] = list(module.patch_grid)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor],
                         model: 'VisionMamba',
                         prefix: Optional[str] = None
                         ) -> Dict[str, torch.Tensor]:
    """Adapt a checkpoint's state dict to ``model``; neither is modified.

    Keeps the keys under ``prefix`` (e.g. ``'backbone.'`` of a detector's
    file) without it, drops the classifier head (and ``norm_f`` when the
    model has no final norm), and resizes ``pos_embed`` from the grid it was
    trained for (:func:`checkpoint_grid`, which reads what the state dict's
    ``_metadata`` says about it) to the model's, keeping the middle class
    token's row apart. A checkpoint with a class token loads into a
    model without one by dropping that row. Whatever else does not fit is
    left for the model's strict loading to report.
    """
    metadata = getattr(state_dict, '_metadata', None) or {}
    stated = metadata.get('')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        stated = metadata.get(prefix[:-1])
        state_dict = {
            k[len(prefix):]: v
            for k, v in state_dict.items() if k.startswith(prefix)
        }
    unused = CLASSIFIER_PREFIXES + (() if model.final_norm else ('norm_f.', ))
    state_dict = {
        k: v
        for k, v in state_dict.items() if not k.startswith(unused)
    }
    if 'pos_embed' not in state_dict:
        return state_dict
    pos_embed = state_dict['pos_embed']
    with_cls_token = 'cls_token' in state_dict
    grid = checkpoint_grid(model, pos_embed.shape[1] - int(with_cls_token),
                           stated)
    pos_embed = resize_pos_embed(pos_embed, grid, model.patch_grid,
                                 with_cls_token, model.interpolate_mode)
    if with_cls_token and not model.with_cls_token:
        cls_index = model.patch_grid[0] * model.patch_grid[1] // 2
        pos_embed = torch.cat(
            [pos_embed[:, :cls_index], pos_embed[:, cls_index + 1:]], dim=1)
    return {**state_dict, 'pos_embed': pos_embed}


class PatchEmbed(nn.Module):
    """Conv patchify; overlapping patches when stride < patch size. A module
    of its own so that the weights keep the released ``patch_embed.proj``
    names."""

    def __init__(self, in_channels, embed_dims, patch_size, stride):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dims, patch_size, stride)

    def forward(self, x):
        return self.proj(x)


@MODELS.register_module()
class VisionMamba(BaseModule):
    """Vision Mamba (Zhu et al., ICML 2024) with the released models' weights.

    Patches are embedded, ONE class token is inserted in the middle of the
    patch sequence (index ``M // 2`` of M patches) and the absolute position
    embedding is added; bidirectional Mamba blocks follow. Parameter names
    are those of the released checkpoints, which load as they are.

    Any input size works: the patch grid follows the input and ``pos_embed``
    (stored for ``img_size``) is interpolated to it, the class token's own row
    kept apart.

    Args:
        arch: 'tiny' | 'small' | 'base', or a dict of embed_dims and
            num_layers.
        img_size: input size the stored ``pos_embed`` is for; pretrained
            embeddings are resized to it on loading.
        pretrain_img_size: input size a pretrained checkpoint's ``pos_embed``
            was trained for, for files that do not say (mmvim's state dicts
            name their grid, released files their ``args.input_size``). By
            default ``img_size`` (a file this model saved) or the released
            models' 224x224, whichever alone has the file's patch count.
        patch_size, stride: patch embedding conv (stride 8 gives the '+'
            models' overlapping patches).
        d_state: SSM state size.
        in_channels: image channels.
        out_indices: blocks whose output is returned (negative from the end).
        out_type: 'featmap' returns, for each index, a contiguous
            (B, D, Hp, Wp) map of the patch tokens in raster order.
            'cls_token' returns the (B, D) class-token feature.
        feature_source: which tensor of block i is its output. 'stream': the
            token stream after the block (the residual stream the next block
            reads; after ``norm_f`` for the last block when ``final_norm``).
            'mixer': the block's mixer output alone (before drop path), as
            the reference's Vim-Ti segmentation run read it.
        final_norm: apply ``norm_f`` to the last block's output. Without it
            there is no ``norm_f`` (an unused parameter would stop
            DistributedDataParallel) and a checkpoint's is ignored.
        with_cls_token: insert the class token (released models do; the
            reference segmentation backbone dropped it).
        interpolate_mode: how ``pos_embed`` is resized.
        drop_path_rate: stochastic depth, linear over the blocks.
        with_cp: gradient checkpointing per block (saves memory at large
            inputs for one more forward pass per block).
        fuse_directions: one conv and one scan call for both directions.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH, prefix=None)``
            loads a released Vim file or a state dict through
            :func:`checkpoint_filter_fn`; otherwise the reference
            initialisation.
    """
    arch_zoo = {
        'tiny': dict(embed_dims=192, num_layers=24),
        'small': dict(embed_dims=384, num_layers=24),
        'base': dict(embed_dims=768, num_layers=24),
    }
    out_types = ('featmap', 'cls_token')
    feature_sources = ('stream', 'mixer')
    interpolate_modes = ('bicubic', 'bilinear', 'nearest', 'area')

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 stride: int = 16,
                 d_state: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'featmap',
                 feature_source: str = 'stream',
                 final_norm: bool = True,
                 with_cls_token: bool = True,
                 pretrain_img_size: Optional[Union[int, Sequence[int]]] = None,
                 interpolate_mode: str = 'bicubic',
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 fuse_directions: bool = True,
                 init_cfg: Optional[Dict] = None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, str):
            if arch not in self.arch_zoo:
                raise ValueError(f'Unknown arch {arch!r}; choose one of '
                                 f'{sorted(self.arch_zoo)} or pass a dict.')
            arch = self.arch_zoo[arch]
        if not {'embed_dims', 'num_layers'} <= set(arch):
            raise ValueError('A custom arch needs embed_dims and num_layers, '
                             f'got {arch}.')
        _require_positive(
            embed_dims=arch['embed_dims'], num_layers=arch['num_layers'],
            patch_size=patch_size, stride=stride, d_state=d_state,
            in_channels=in_channels)
        if out_type not in self.out_types:
            raise ValueError(f'out_type must be one of {self.out_types}, '
                             f'got {out_type!r}.')
        if feature_source not in self.feature_sources:
            raise ValueError(
                f'feature_source must be one of {self.feature_sources}, '
                f'got {feature_source!r}.')
        if interpolate_mode not in self.interpolate_modes:
            raise ValueError(
                f'interpolate_mode must be one of {self.interpolate_modes}, '
                f'got {interpolate_mode!r}.')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs with_cls_token=True.")
        if feature_source == 'mixer' and final_norm:
            raise ValueError(
                "feature_source='mixer' reads the mixer outputs, which "
                'norm_f (made for the residual stream) never sees: set '
                'final_norm=False.')
        if not 0 <= drop_path_rate < 1:
            raise ValueError('drop_path_rate must be in [0, 1), got '
                             f'{drop_path_rate!r}.')
        self.embed_dims = arch['embed_dims']
        self.num_layers = arch['num_layers']
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.stride = stride
        self.out_type = out_type
        self.feature_source = feature_source
        self.final_norm = final_norm
        self.with_cls_token = with_cls_token
        self.interpolate_mode = interpolate_mode
        self.with_cp = with_cp
        self.out_indices = self._normalise_indices(out_indices)
        self.img_size = _pair(img_size)
        self.pretrain_img_size = (None if pretrain_img_size is None else
                                  _pair(pretrain_img_size))
        self.patch_grid = self.grid_for(self.img_size)

        self.patch_embed = PatchEmbed(in_channels, self.embed_dims,
                                      patch_size, stride)
        num_tokens = self.patch_grid[0] * self.patch_grid[1] + int(
            with_cls_token)
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, num_tokens, self.embed_dims))
        rates = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        self.layers = nn.ModuleList([
            VimBlock(self.embed_dims, d_state, rate, fuse_directions)
            for rate in rates
        ])
        if final_norm:
            self.norm_f = RMSNorm(self.embed_dims)
        self.register_state_dict_post_hook(_state_patch_grid)
        self._reference_init()

    def _normalise_indices(self, out_indices):
        indices = [out_indices] if isinstance(out_indices, int) else list(
            out_indices)
        normalised = []
        for index in indices:
            if not -self.num_layers <= index < self.num_layers:
                raise ValueError(f'out index {index} is out of range for '
                                 f'{self.num_layers} layers.')
            normalised.append(index % self.num_layers)
        return tuple(normalised)

    def grid_for(self, size: Tuple[int, int]) -> Tuple[int, int]:
        """Patch grid (rows, cols) of an (H, W) input."""
        if min(size) < self.patch_size:
            raise ValueError(
                f'Input {size[0]}x{size[1]} is smaller than one '
                f'{self.patch_size}x{self.patch_size} patch; resize or pad '
                'the image.')
        return tuple((s - self.patch_size) // self.stride + 1 for s in size)

    def no_weight_decay(self) -> Set[str]:
        """Parameters that take no weight decay (timm's convention): the
        position embedding, the class token and each block's state-space
        parameters."""
        names = {'pos_embed'} | ({'cls_token'} if self.with_cls_token else
                                 set())
        return names | {
            f'layers.{i}.{name}'
            for i, layer in enumerate(self.layers)
            for name in layer.no_weight_decay()
        }

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """(depth, number of depths) of a parameter for layer-wise lr decay
        (mmpretrain's convention).

        The embeddings are depth 0, block i is i + 1, and everything else
        (``norm_f``, and the neck and heads above the backbone) is the top
        depth ``num_layers + 1``: ``norm_f`` feeds the new task's neck, so
        like the head it is not slowed down.
        """
        num_depths = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        name = param_name[len(prefix):]
        if name.startswith(('patch_embed.', 'pos_embed', 'cls_token')):
            return 0, num_depths
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1, num_depths
        return num_depths - 1, num_depths

    @torch.no_grad()
    def _reference_init(self):
        """The reference initialisation (trunc-normal embeddings, LeCun
        patch conv, out_proj scaled down by sqrt(depth))."""
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        if self.with_cls_token:
            nn.init.trunc_normal_(self.cls_token, std=.02)
        proj = self.patch_embed.proj
        fan_in = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
        # LeCun normal: truncated normal with variance 1 / fan_in.
        nn.init.trunc_normal_(proj.weight, std=math.sqrt(1. / fan_in) /
                              .87962566103423978)
        nn.init.zeros_(proj.bias)
        for layer in self.layers:
            out_proj = layer.mixer.out_proj.weight
            nn.init.kaiming_uniform_(out_proj, a=math.sqrt(5))
            out_proj.div_(math.sqrt(self.num_layers))

    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get(
                'type') == 'Pretrained':
            self.load_pretrained(self.init_cfg['checkpoint'],
                                 self.init_cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None):
        """Load a released Vim checkpoint (or a state dict) strictly.

        The file is adapted by :func:`checkpoint_filter_fn`; any other
        difference (missing or unexpected keys, wrong shapes) raises with the
        keys listed rather than loading half a model.
        """
        state_dict = checkpoint_filter_fn(
            load_checkpoint_state_dict(checkpoint), self, prefix)
        own = self.state_dict()
        missing = own.keys() - state_dict.keys()
        unexpected = state_dict.keys() - own.keys()
        mismatched = [
            f'{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}'
            for k in own.keys() & state_dict.keys()
            if state_dict[k].shape != own[k].shape
        ]
        if missing or unexpected or mismatched:
            problems = []
            if missing:
                problems.append(f'missing keys: {_describe(missing)}')
            if unexpected:
                problems.append(f'unexpected keys: {_describe(unexpected)}')
            if mismatched:
                problems.append('shape mismatch (checkpoint vs model): ' +
                                _describe(mismatched))
            raise ValueError(
                f'{checkpoint} does not fit this VisionMamba '
                f'(embed_dims={self.embed_dims}, num_layers='
                f'{self.num_layers}, patch {self.patch_size}/{self.stride}): '
                + '; '.join(problems) + '. Check arch, stride and d_state '
                'against the checkpoint.')
        self.load_state_dict(state_dict, strict=True)
        MMLogger.get_current_instance().info(
            f'VisionMamba: loaded {len(state_dict)} tensors from {checkpoint}')

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Refuse weights of the wrong shape under this backbone's prefix,
        however the loader was called.

        mmengine's loader (behind mmseg's ``init_model``, mmdet's
        ``init_detector`` and their inferencers) loads with ``strict=False``
        and only warns about mismatched shapes, which leaves random weights in
        their place: here it is an error naming the keys.
        """
        mismatched = [
            f'{prefix}{name} {tuple(state_dict[prefix + name].shape)} vs '
            f'{tuple(tensor.shape)}'
            for name, tensor in self.state_dict().items()
            if prefix + name in state_dict
            and state_dict[prefix + name].shape != tensor.shape
        ]
        if mismatched:
            raise ValueError(
                'The checkpoint does not fit this VisionMamba (embed_dims='
                f'{self.embed_dims}, num_layers={self.num_layers}, img_size '
                f'{self.img_size}): shape mismatch (checkpoint vs model): '
                f'{_describe(mismatched)}. Use the config the checkpoint was '
                'trained with.')
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _pos_embed_for(self, grid):
        return resize_pos_embed(self.pos_embed, self.patch_grid, grid,
                                self.with_cls_token, self.interpolate_mode)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, C, H, W) images -> one feature per ``out_indices`` entry, in
        the dtype of the model's weights (float32 under autocast)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'VisionMamba expects (B, {self.in_channels}, H, W) images, '
                f'got shape {tuple(x.shape)}.')
        if x.shape[0] == 0:
            raise ValueError('VisionMamba got an empty batch (0 images).')
        grid = self.grid_for(x.shape[-2:])
        cls_index = grid[0] * grid[1] // 2
        stream = self._embed(x, grid, cls_index)
        outs = []
        for index, layer in enumerate(self.layers):
            if self.with_cp and self.training and stream.requires_grad:
                stream, hidden = cp.checkpoint(
                    layer, stream, use_reentrant=False)
            else:
                stream, hidden = layer(stream)
            if index in self.out_indices:
                outs.append(self._output(index, stream, hidden, grid,
                                         cls_index))
            # Not kept alive through the next layer (where inference peaks).
            del hidden
        return tuple(outs)

    def _embed(self, x, grid, cls_index):
        """The float32 token stream the first block reads: patches, the
        class token and the position embedding (their temporaries freed on
        return)."""
        tokens = self.patch_embed(x.to(self.pos_embed.dtype)).flatten(
            2).transpose(1, 2)
        if self.with_cls_token:
            tokens = torch.cat([
                tokens[:, :cls_index],
                self.cls_token.expand(tokens.shape[0], -1, -1),
                tokens[:, cls_index:]
            ], dim=1)
        return (tokens + self._pos_embed_for(grid)).float()

    def _output(self, index, stream, hidden, grid, cls_index):
        """Block ``index``'s feature as ``out_type`` asks, in the weights'
        dtype."""
        out = stream if self.feature_source == 'stream' else hidden
        if self.final_norm and index == self.num_layers - 1:
            out = self.norm_f(out)
        return self._format(out.to(self.pos_embed.dtype), grid, cls_index)

    def _format(self, tokens, grid, cls_index):
        if self.out_type == 'cls_token':
            return tokens[:, cls_index]
        if self.with_cls_token:
            tokens = torch.cat(
                [tokens[:, :cls_index], tokens[:, cls_index + 1:]], dim=1)
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1,
                                              *grid).contiguous()
