import sys
from pathlib import Path

import pytest
import torch
from mmengine.analysis import FlopAnalyzer

from mmvim.models.backbones.vision_mamba import VisionMamba

REPO = Path(__file__).parents[2]
sys.path.insert(0, str(REPO / 'tools' / 'analysis_tools'))
import get_flops  # noqa: E402

SMALL_ARCH = dict(embed_dims=64, num_layers=2)


def small_vim(size):
    return VisionMamba(arch=SMALL_ARCH, img_size=size)


def test_scan_is_counted_by_the_stated_formula():
    size, state = 64, 16
    model = small_vim(size)
    stats = get_flops.count_complexity(model, (torch.randn(1, 3, size,
                                                           size), ))
    tokens = (size // 16)**2 + 1  # patches + class token
    channels = 2 * 2 * SMALL_ARCH['embed_dims']  # d_inner, both directions
    expected = SMALL_ARCH['num_layers'] * channels * tokens * (4 * state + 3)
    assert stats['scan_flops'] == expected
    # Without the handle mmengine counts the scan as zero: ours adds it.
    plain = FlopAnalyzer(model, (torch.randn(1, 3, size, size), ))
    plain.unsupported_ops_warnings(False)
    assert stats['flops'] == plain.total() + expected
    assert stats['params'] == sum(p.numel() for p in model.parameters())


def test_flops_grow_with_resolution():
    counts = [
        get_flops.count_complexity(small_vim(size),
                                   (torch.randn(1, 3, size, size), ))
        for size in (64, 96)
    ]
    assert counts[1]['flops'] > counts[0]['flops']
    assert counts[1]['scan_flops'] > counts[0]['scan_flops']


def test_command_line_backbone(capsys):
    stats = get_flops.main(['--backbone', 'tiny', '--shape', '64'])
    # Released Vim-Ti: 7,148,008 with the 1000-class head (193,000) and a
    # 197-row pos_embed; here 16 patches + class token = 17 rows of 192.
    assert stats['params'] == 7_148_008 - 193_000 - (197 - 17) * 192
    out = capsys.readouterr().out
    assert 'selective scan' in out and 'parameters: 6.920 M' in out


def test_command_line_segmentation_config():
    pytest.importorskip('mmseg')
    stats = get_flops.main(
        [str(REPO / 'configs/ade20k/upernet_vim_tiny.py'), '--shape', '64'])
    # UperNet + Vim-Ti: about 13M parameters in the Vim paper.
    assert 12e6 < stats['params'] < 14e6
    assert stats['scan_flops'] > 0
