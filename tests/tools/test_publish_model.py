import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location(
    'publish_model', ROOT / 'tools/model_converters/publish_model.py')
publish_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(publish_model)


def test_publish_keeps_weights_drops_training_state(tmp_path):
    source = tmp_path / 'iter_10.pth'
    weights = {'backbone.pos_embed': torch.randn(1, 5, 4)}
    torch.save({'state_dict': weights, 'meta': {'iter': 10},
                'optimizer': {'state': {}, 'param_groups': []}}, source)
    final = publish_model.publish(str(source), str(tmp_path / 'release.pth'))
    assert final.name.startswith('release-') and final.suffix == '.pth'
    published = torch.load(final, weights_only=True)
    assert set(published) == {'state_dict', 'meta'}
    torch.testing.assert_close(published['state_dict']['backbone.pos_embed'],
                               weights['backbone.pos_embed'])
    # Publishing again would produce the same file: refused, not overwritten.
    with pytest.raises(FileExistsError, match='not overwriting'):
        publish_model.publish(str(source), str(tmp_path / 'release.pth'))
    assert source.exists()


def test_publish_rejects_non_checkpoints(tmp_path):
    bare = tmp_path / 'bare.pth'
    torch.save({'weight': torch.zeros(1)}, bare)
    with pytest.raises(ValueError, match='not an mmengine checkpoint'):
        publish_model.publish(str(bare), str(tmp_path / 'out.pth'))
