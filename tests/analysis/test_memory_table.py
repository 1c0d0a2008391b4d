"""The memory tables of the docs (mmvim.analysis.memory_table); the tool:
tests/tools/test_memory_tables.py."""
from pathlib import Path

import pytest

from mmvim.analysis.memory_table import (VARIANTS, docs_tables, grid,
                                         readme_table,
                                         replace_between_markers,
                                         shipped_configs)

REPO = Path(__file__).parents[2]
SEG = str(REPO / 'configs/ade20k/upernet_vim_tiny.py')
GIB = 2**30


def test_grid_covers_the_recipe_batch_and_1_2_4_in_four_variants():
    settings = grid(SEG)
    train = [s for s in settings if s.mode == 'train']
    assert sorted({s.batch_per_gpu for s in train}) == [1, 2, 4, 8]
    assert len(train) == 4 * len(VARIANTS)
    assert {(s.amp, s.cfg_options['model.backbone.with_cp'])
            for s in train} == set(VARIANTS)
    assert [s.mode for s in settings[len(train):]] == ['test']


def _rows(peaks_gib):
    """Result rows of the tiny seg config at batches 8 and 1: peaks in
    GiB in VARIANTS order."""
    rows = []
    for batch, peaks in peaks_gib.items():
        for (amp, with_cp), peak in zip(VARIANTS, peaks):
            rows.append(dict(config=SEG, mode='train', batch_per_gpu=batch,
                             amp=amp, with_cp=with_cp,
                             input_shape=[512, 512], ops_backend='triton',
                             peak_bytes=int(peak * GIB)))
    rows.append(dict(config=SEG, mode='test', batch_per_gpu=1, amp=False,
                     with_cp=False, input_shape=[512, 2048],
                     ops_backend='triton', peak_bytes=GIB))
    return rows


def test_tables_show_peaks_and_the_smallest_card():
    rows = _rows({8: (20.0, 12.0, 14.0, 9.0), 1: (3.0, 2.5, 2.0, 1.5)})
    docs = docs_tables(rows)
    assert '| **8** (recipe) | 20.00 (24 GB) | 12.00 (16 GB) | ' \
        '14.00 (24 GB) | 9.00 (16 GB) |' in docs
    assert '| 1 | 3.00 (16 GB) |' in docs
    assert 'Inference (fp32, one 512x2048 image): 1.00 (16 GB).' in docs
    readme = readme_table(rows)
    assert f'| `{SEG}` | 8 | 20.00 (24 GB) | 14.00 (24 GB) |' in readme


def test_markers_delimit_what_is_replaced():
    text = 'a\n<!-- t:start -->\nold\n<!-- t:end -->\nb\n'
    assert replace_between_markers(text, 't', 'new\n') == \
        'a\n<!-- t:start -->\nnew\n<!-- t:end -->\nb\n'
    with pytest.raises(ValueError, match='markers'):
        replace_between_markers('no markers', 't', 'x')


def test_shipped_configs_are_the_runnable_ones():
    configs = [Path(p).relative_to(REPO).as_posix()
               for p in shipped_configs(str(REPO))]
    assert 'configs/ade20k/upernet_vim_tiny.py' in configs
    assert 'configs/coco/cascade_mask_rcnn_vim_small.py' in configs
    assert not [p for p in configs if '_base_' in p]
