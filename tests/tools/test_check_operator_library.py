"""tools/analysis_tools/check_operator_library.py: the compiled operator
library loads into this torch and agrees with the plain-PyTorch references
(the same check, run under another torch, shows the stable ABI at work)."""
import pytest

from mmvim.ops import registry

SCRIPT = 'tools/analysis_tools/check_operator_library.py'


def test_the_library_agrees_with_the_references(run_tool):
    if registry.load_backend('cpu')[1] is not None:
        pytest.skip('cpu backend unavailable: '
                    f'{registry.load_backend("cpu")[1]}')
    result = run_tool([SCRIPT])
    assert result.returncode == 0, result.stderr
    assert 'backward gradients shaped as their inputs' in result.stdout


@pytest.mark.slow  # two processes
def test_a_missing_library_is_one_line(run_tool, tmp_path):
    result = run_tool([SCRIPT, tmp_path / 'absent.so'])
    assert result.returncode != 0
    assert result.stderr.strip() == \
        f'error: no such library: {tmp_path / "absent.so"}'
    damaged = tmp_path / 'damaged.so'
    damaged.write_bytes(b'not a library')
    result = run_tool([SCRIPT, damaged])
    assert result.returncode != 0 and 'does not load into torch' in \
        result.stderr and 'Traceback' not in result.stderr
