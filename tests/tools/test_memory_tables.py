"""tools/analysis_tools/memory_tables.py: redrawing the tables from a results
file, and never overwriting one (the tables themselves:
tests/analysis/test_memory_table.py)."""
import json
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


def test_tables_are_redrawn_from_a_results_file(tool_module, tmp_path,
                                                capsys):
    memory_table = tool_module('tools/analysis_tools/memory_tables.py')
    config = str(REPO / 'configs/ade20k/upernet_vim_tiny.py')
    rows = [dict(config=config, mode='train', batch_per_gpu=8, amp=amp,
                 with_cp=with_cp, input_shape=[512, 512],
                 ops_backend='triton', peak_bytes=(20 - amp) * 2**30)
            for amp in (False, True) for with_cp in (False, True)]
    results = tmp_path / 'results.json'
    results.write_text(json.dumps(rows))
    memory_table.main(['--from', str(results)])
    out = capsys.readouterr().out
    assert '| **8** (recipe) | 20.00 (24 GB) | 20.00 (24 GB) | 19.00 (24 GB)' \
        in out
    assert f'| `{config}` | 8 | 20.00 (24 GB) | 19.00 (24 GB) |' in out
    with pytest.raises(SystemExit):
        memory_table.parse_args(['--results', str(results)])
    assert 'exists' in capsys.readouterr().err
