"""tools/deployment/pytorch2aoti.py on a tiny UperNet + Vim: the package is
written whole, calls mmvim's operators and agrees with PyTorch."""
import zipfile

import pytest

pytestmark = pytest.mark.slow  # AOTInductor compiles C++ for a minute

SCRIPT = 'tools/deployment/pytorch2aoti.py'


def test_segmentor_packages_and_matches_pytorch(tool_main, tiny_config,
                                                random_checkpoint, tmp_path,
                                                capsys):
    out = tmp_path / 'tiny.pt2'
    errors = tool_main(SCRIPT, tiny_config, random_checkpoint(), '--out', out,
                       '--shape', 32, 48, '--time-runs', 1)
    assert len(errors) == 1 and errors[0] < 1e-4
    printed = capsys.readouterr().out
    assert 'logits (1, 150, 32, 48)' in printed
    assert 'package' in printed and 'PyTorch eager' in printed
    assert zipfile.is_zipfile(out)
    # Nothing but the package is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ['tiny.pt2', 'random.pth'])


def test_refuses_a_file_it_would_replace_and_a_wrong_suffix(
        run_tool, tiny_config, tmp_path):
    existing = tmp_path / 'kept.pt2'
    existing.write_bytes(b'user file')
    result = run_tool([SCRIPT, tiny_config, '--out', existing])
    assert result.returncode != 0
    assert 'already exists' in result.stderr and 'Traceback' not in \
        result.stderr
    assert existing.read_bytes() == b'user file'
    result = run_tool([SCRIPT, tiny_config, '--out', tmp_path / 'x.onnx'])
    assert result.returncode != 0 and 'must end in .pt2' in result.stderr
