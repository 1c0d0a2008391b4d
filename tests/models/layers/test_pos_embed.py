import pytest
import torch
import torch.nn.functional as F

from mmvim.models.layers import resize_pos_embed


def rows(grid, dims=3, with_cls_token=True):
    """A pos_embed whose patch row r, c holds (r, c, r * c) and whose class
    row holds -1, so every row tells where it came from."""
    r, c = torch.meshgrid(torch.arange(grid[0]).float(),
                          torch.arange(grid[1]).float(), indexing='ij')
    patches = torch.stack([r, c, r * c], -1).reshape(1, -1, dims)
    if not with_cls_token:
        return patches
    middle = grid[0] * grid[1] // 2
    cls_row = torch.full((1, 1, dims), -1.)
    return torch.cat([patches[:, :middle], cls_row, patches[:, middle:]], 1)


def test_same_grid_is_returned_as_is():
    pos = rows((3, 5))
    assert resize_pos_embed(pos, (3, 5), (3, 5)) is pos


@pytest.mark.parametrize('src, dst', [((4, 4), (2, 8)), ((3, 5), (6, 10)),
                                      ((36, 64), (18, 32))])
def test_class_row_moves_to_the_middle_untouched(src, dst):
    out = resize_pos_embed(rows(src), src, dst)
    middle = dst[0] * dst[1] // 2
    assert out.shape == (1, dst[0] * dst[1] + 1, 3)
    assert (out[0, middle] == -1).all()
    assert (out[0, :middle] != -1).any(dim=-1).all()


def test_patch_rows_are_an_image_in_raster_order():
    src, dst = (3, 5), (6, 10)
    out = resize_pos_embed(rows(src), src, dst, mode='bilinear')
    middle = dst[0] * dst[1] // 2
    patches = torch.cat([out[:, :middle], out[:, middle + 1:]], 1)
    image = rows(src, with_cls_token=False).reshape(1, *src, 3).permute(
        0, 3, 1, 2)
    expected = F.interpolate(image, size=dst, mode='bilinear',
                             align_corners=False)
    torch.testing.assert_close(patches.reshape(1, *dst, 3).permute(0, 3, 1, 2),
                               expected)


def test_without_class_token_every_row_is_a_patch():
    pos = rows((4, 6), with_cls_token=False)
    out = resize_pos_embed(pos, (4, 6), (2, 3), with_cls_token=False,
                           mode='nearest')
    assert out.shape == (1, 6, 3)
    assert (out != -1).all()


def test_keeps_the_dtype():
    pos = rows((4, 4)).half()
    assert resize_pos_embed(pos, (4, 4), (8, 8)).dtype == torch.float16


def test_row_count_must_fit_the_source_grid():
    with pytest.raises(ValueError, match='expected 17 for a 4x4 grid'):
        resize_pos_embed(rows((2, 8), dims=3)[:, :-1], (4, 4), (8, 8))
