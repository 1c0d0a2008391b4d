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


def test_release_holds_no_paths_of_the_training_machine(tmp_path):
    work_dir, data_root = tmp_path / 'work_dirs/run', tmp_path / 'data/ade'
    source = tmp_path / 'iter_10.pth'
    torch.save({
        'state_dict': {'w': torch.zeros(2)},
        'meta': {'iter': 10, 'seed': 0,
                 'cfg': f"data_root = '{data_root}'\nwork_dir = '{work_dir}'",
                 'experiment_name': f'{work_dir}/20260101_000000',
                 'dataset_meta': {'classes': ('wall', 'floor')}},
        'message_hub': {'log_scalars': {}, 'runtime_info': {
            'last_ckpt': f'{work_dir}/iter_10.pth'}, 'resumed_keys': {}},
    }, source)
    final = publish_model.publish(str(source), str(tmp_path / 'release.pth'))
    assert str(tmp_path).encode() not in final.read_bytes()
    published = torch.load(final, weights_only=True)
    assert published['meta'] == {
        'iter': 10, 'seed': 0, 'dataset_meta': {'classes': ('wall', 'floor')}}
    assert torch.serialization.get_unsafe_globals_in_checkpoint(final) == []


@pytest.mark.parametrize('out,expected', [
    ('release.pth', 'release-{}.pth'),
    ('release.pt', 'release-{}.pt'),
    ('release', 'release-{}.pth'),
    ('b.tar.gz', 'b.tar.gz-{}.pth'),
    ('releases/', 'releases/iter_10-{}.pth'),
    ('existing', 'existing/iter_10-{}.pth'),
])
def test_release_names(tmp_path, out, expected):
    source = tmp_path / 'iter_10.pth'
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'meta': {}}, source)
    (tmp_path / 'existing').mkdir()
    final = publish_model.publish(str(source), str(tmp_path / out) + (
        '/' if out.endswith('/') else ''))
    digest = final.name.rsplit('-', 1)[1][:8]
    assert final == tmp_path / expected.format(digest)
    assert torch.load(final, weights_only=True)['state_dict']['w'].shape == (
        2, )
