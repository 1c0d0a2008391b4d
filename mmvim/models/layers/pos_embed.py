"""Resizing Vim's absolute position embedding to another patch grid."""
from typing import Tuple

import torch
import torch.nn.functional as F


def resize_pos_embed(pos_embed: torch.Tensor,
                     src_grid: Tuple[int, int],
                     dst_grid: Tuple[int, int],
                     with_cls_token: bool = True,
                     mode: str = 'bicubic') -> torch.Tensor:
    """Interpolate the patch rows of ``pos_embed`` from one grid to another.

    Vim puts its class token in the middle of the sequence, so its row sits
    at index ``M // 2`` of the M + 1 rows, not at the front. That row is taken
    out, the M patch rows are interpolated as an image, and the row goes back
    in at the middle of the new grid, untouched.

    pos_embed: (1, M (+1), D) for a (h, w) ``src_grid``; returns
    (1, M' (+1), D) for ``dst_grid``. Unchanged input when the grids match.
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    num_patches = src_grid[0] * src_grid[1]
    expected = num_patches + int(with_cls_token)
    if pos_embed.shape[1] != expected:
        raise ValueError(
            f'pos_embed has {pos_embed.shape[1]} rows, expected {expected} '
            f'for a {src_grid[0]}x{src_grid[1]} grid '
            f'{"plus a class token" if with_cls_token else ""}.')
    if src_grid == dst_grid:
        return pos_embed
    cls_index = num_patches // 2
    if with_cls_token:
        cls_row = pos_embed[:, cls_index:cls_index + 1]
        patches = torch.cat(
            [pos_embed[:, :cls_index], pos_embed[:, cls_index + 1:]], dim=1)
    else:
        patches = pos_embed
    dims = patches.shape[-1]
    image = patches.reshape(1, *src_grid, dims).permute(0, 3, 1, 2)
    # align_corners only exists for the interpolating modes (not 'nearest').
    corners = {} if mode in ('nearest', 'nearest-exact', 'area') else dict(
        align_corners=False)
    image = F.interpolate(image.float(), size=dst_grid, mode=mode,
                          **corners).to(pos_embed.dtype)
    patches = image.permute(0, 2, 3, 1).reshape(1, -1, dims)
    if not with_cls_token:
        return patches
    new_index = dst_grid[0] * dst_grid[1] // 2
    return torch.cat(
        [patches[:, :new_index], cls_row, patches[:, new_index:]], dim=1)
