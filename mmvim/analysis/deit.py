"""DeiT, the transformer baseline of the Vim paper's speed and memory
comparison, with PyTorch's fused attention (F.scaled_dot_product_attention).

timm's model is used when timm imports; otherwise a module of the same
architecture defined here (timm needs torchvision, and PyPI's torchvision
does not load beside a CPU-only torch).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

# arch -> (embedding dims, attention heads); patch 16, 12 layers, MLP ratio 4.
DEIT_ARCHS = {'tiny': (192, 3), 'small': (384, 6)}


class DeiTBlock(nn.Module):
    """Pre-norm transformer block; attention by F.scaled_dot_product_attention
    (flash / memory-efficient kernels where PyTorch has them)."""

    def __init__(self, dims: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        self.qkv = nn.Linear(dims, 3 * dims)
        self.proj = nn.Linear(dims, dims)
        self.norm2 = nn.LayerNorm(dims, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dims, mlp_ratio * dims), nn.GELU(),
            nn.Linear(mlp_ratio * dims, dims))

    def forward(self, x):
        batch, tokens, dims = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads,
                                               -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, tokens,
                                                           dims))
        return x + self.mlp(self.norm2(x))


class DeiT(nn.Module):
    """DeiT backbone (class token first, learned position embedding for
    ``img_size``); forward returns the normalised tokens (B, 1 + HW, D)."""

    def __init__(self, dims: int, heads: int, img_size: int,
                 depth: int = 12, patch_size: int = 16):
        super().__init__()
        grid = img_size // patch_size
        self.patch_embed = nn.Conv2d(3, dims, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + 1, dims) *
                                      .02)
        self.blocks = nn.Sequential(
            *[DeiTBlock(dims, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dims, eps=1e-6)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return self.norm(self.blocks(tokens))


def build_deit(arch: str, img_size: int) -> Tuple[nn.Module, str]:
    """(model, implementation): timm's DeiT when timm imports, else ours.
    Either returns the normalised tokens, without a classifier head."""
    try:
        import timm
    except Exception as error:  # noqa: BLE001 - e.g. torchvision broken
        dims, heads = DEIT_ARCHS[arch]
        reason = type(error).__name__
        return DeiT(dims, heads,
                    img_size), f'built-in sdpa (no timm: {reason})'
    model = timm.create_model(f'deit_{arch}_patch16_224', pretrained=False,
                              num_classes=0, img_size=img_size)
    fused = all(
        getattr(block.attn, 'fused_attn', False) for block in model.blocks)
    model.forward = model.forward_features
    return model, f'timm {timm.__version__} (fused_attn={fused})'
