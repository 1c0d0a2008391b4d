"""tools/analysis_tools/get_flops.py on a bare backbone and on a config;
the counting itself: tests/analysis/test_complexity.py."""
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


@pytest.fixture
def get_flops(tool_module):
    return tool_module('tools/analysis_tools/get_flops.py')


@pytest.mark.slow  # traces the whole 24-layer Vim-Ti
def test_command_line_backbone(get_flops, capsys):
    stats = get_flops.main(['--backbone', 'tiny', '--shape', '64'])
    # Released Vim-Ti: 7,148,008 with the 1000-class head (193,000) and a
    # 197-row pos_embed; here 16 patches + class token = 17 rows of 192.
    assert stats['params'] == 7_148_008 - 193_000 - (197 - 17) * 192
    out = capsys.readouterr().out
    assert 'selective scan' in out and 'parameters: 6.920 M' in out


@pytest.mark.slow  # traces UperNet + Vim-Ti
def test_command_line_segmentation_config(get_flops):
    pytest.importorskip('mmseg')
    stats = get_flops.main(
        [str(REPO / 'configs/ade20k/upernet_vim_tiny.py'), '--shape', '64'])
    # UperNet + Vim-Ti: about 13M parameters in the Vim paper.
    assert 12e6 < stats['params'] < 14e6
    assert stats['scan_flops'] > 0


def test_more_than_two_shape_values_are_refused(get_flops, capsys):
    with pytest.raises(SystemExit):
        get_flops.parse_args(['--backbone', 'tiny', '--shape', '1', '2', '3'])
    assert 'a height and an optional width' in capsys.readouterr().err
