"""model-index.yml and the metafiles describe the configs that exist."""
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def metafiles():
    index = yaml.safe_load((REPO / 'model-index.yml').read_text())
    return [REPO / path for path in index['Import']]


def test_every_runnable_config_is_in_exactly_one_metafile():
    listed = []
    for path in metafiles():
        meta = yaml.safe_load(path.read_text())
        collections = {c['Name'] for c in meta['Collections']}
        for model in meta['Models']:
            assert model['In Collection'] in collections, model['Name']
            assert (REPO / model['Config']).is_file(), model['Config']
            assert Path(model['Config']).parent == path.parent.relative_to(
                REPO), 'a config belongs to its own family\'s metafile'
            listed.append(model['Config'])
    runnable = sorted(
        str(p.relative_to(REPO)) for p in (REPO / 'configs').rglob('*.py')
        if '_base_' not in p.parts)
    assert sorted(listed) == runnable


def test_model_names_are_unique_and_readmes_exist():
    names = []
    for path in metafiles():
        meta = yaml.safe_load(path.read_text())
        names += [model['Name'] for model in meta['Models']]
        for collection in meta['Collections']:
            assert (REPO / collection['README']).is_file()
    assert len(names) == len(set(names))
