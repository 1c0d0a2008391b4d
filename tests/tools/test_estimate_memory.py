"""tools/analysis_tools/estimate_memory.py: the command line, the JSON it
writes and its errors; the estimate itself:
tests/analysis/test_memory_estimate.py."""
import json
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
TINY = REPO / 'tests/data/configs/tiny_upernet_vim.py'


@pytest.fixture
def estimate_memory(tool_module):
    return tool_module('tools/analysis_tools/estimate_memory.py')


@pytest.mark.slow  # an estimate and a real CPU step of the tiny config
def test_json_and_table_of_a_checked_estimate(estimate_memory, tmp_path,
                                              capsys):
    out = tmp_path / 'memory.json'
    estimate_memory.main([str(TINY), '--device', 'cpu', '--single-gpu',
                          '--check', '--batch-per-gpu', '3', '--out',
                          str(out)])
    result = json.loads(out.read_text())
    breakdown = result['breakdown']
    assert result['peak_bytes'] == sum(breakdown['by_kind'].values()) == \
        sum(breakdown['by_part'].values())
    assert result['settings']['batch_per_gpu'] == 3
    assert result['measured']['counted_peak_bytes'] == result['peak_bytes']
    printed = capsys.readouterr().out
    assert 'peak:' in printed and 'backbone' in printed
    assert 'measured on this CPU' in printed


def test_an_untraceable_model_ends_with_a_message(estimate_memory,
                                                  monkeypatch):
    from mmseg.models.decode_heads import UPerHead
    forward = UPerHead.forward

    def reads_a_value(self, inputs):
        output = forward(self, inputs)
        return output * float(output.detach().max())

    monkeypatch.setattr(UPerHead, 'forward', reads_a_value)
    with pytest.raises(SystemExit, match=r'error: module decode_head '
                       r'\(UPerHead\).*cannot run under fake tensors'):
        estimate_memory.main([str(TINY)])


@pytest.mark.parametrize('args, message', [
    (['--shape', '1', '2', '3'], 'a height and an optional width'),
    (['--check'], '--check runs the step on this CPU'),
    (['--batch-per-gpu', '0'], 'at least 1'),
])
def test_bad_arguments_are_refused(estimate_memory, capsys, args, message):
    with pytest.raises(SystemExit):
        estimate_memory.parse_args([str(TINY), *args])
    assert message in capsys.readouterr().err


def test_an_existing_out_file_is_kept(estimate_memory, tmp_path, capsys):
    out = tmp_path / 'mine.json'
    out.write_text('{"kept": true}')
    with pytest.raises(SystemExit):
        estimate_memory.parse_args([str(TINY), '--out', str(out)])
    assert 'exists' in capsys.readouterr().err
    assert json.loads(out.read_text()) == {'kept': True}
