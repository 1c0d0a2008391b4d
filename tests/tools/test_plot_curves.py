"""tools/analysis_tools/plot_curves.py on the work dir of a real tiny run."""
from pathlib import Path

import pytest
from PIL import Image

from mmvim.runtime import build_runner, load_config

pytestmark = pytest.mark.slow  # trains a tiny model, runs the tool

SCRIPT = 'tools/analysis_tools/plot_curves.py'


def test_curves_of_a_trained_work_dir(tool_main, run_tool, tiny_config,
                                      tmp_path, capsys):
    work_dir = tmp_path / 'run'
    build_runner(load_config(str(tiny_config), work_dir=str(work_dir))).train()
    capsys.readouterr()
    out = tool_main(SCRIPT, work_dir)
    assert ('loss, base_lr, lr, mIoU from 4 training and 1 evaluation '
            'records') in capsys.readouterr().out
    assert out == work_dir / 'curves.png'
    with Image.open(out) as picture:
        assert picture.size == (1500, 450)
    # A second run does not replace the picture unless asked.
    result = run_tool([SCRIPT, work_dir])
    assert result.returncode != 0 and 'pass --overwrite' in result.stderr
    result = run_tool(
        [SCRIPT, work_dir, '--metrics', 'nothing', '--overwrite'])
    assert result.returncode != 0 and 'never logged' in result.stderr
    result = run_tool([SCRIPT, tmp_path / 'missing'])
    assert result.returncode != 0 and 'does not exist' in result.stderr
    # a folder (a new one ending in /, or an existing one) gets curves.png
    for folder in (f'{tmp_path}/pictures/', work_dir):
        out = tool_main(SCRIPT, work_dir, '--out', folder, '--overwrite')
        assert out == Path(folder) / 'curves.png' and out.is_file()
