"""Checks the tools run before handing a config to mmengine's Runner.

The failures they catch would otherwise surface late and badly: a missing
dataset as a stack trace deep inside a dataloader worker, a missing backbone
checkpoint only after the datasets are built, an empty image folder as
``need at least one array to concatenate``, a zero-byte image as an OpenCV
assertion without the file's name. (Checkpoints a run could overwrite are
checked by :mod:`mmvim.runtime.checkpoint_plan`.)
"""
import os
import os.path as osp
import tempfile
from typing import Dict, Iterator, List, Sequence, Tuple

import torch

from mmvim.models.utils.mmengine_checkpoints import load_checkpoint_file
from mmvim.models.utils.weights_fit import state_dict_of

MMSEG_DATA_DOCS = ('https://mmsegmentation.readthedocs.io/en/latest/'
                   'user_guides/2_dataset_prepare.html')
MMDET_DATA_DOCS = ('https://mmdetection.readthedocs.io/en/latest/'
                   'user_guides/dataset_prepare.html')
# How to obtain the datasets our configs use, keyed by a fragment of the
# dataset class name.
DATASET_SOURCES = {
    'ADE20K': ('ADE20K: download http://data.csail.mit.edu/places/'
               'ADEchallenge/ADEChallengeData2016.zip and unzip it into '
               f'data/ade/ (see {MMSEG_DATA_DOCS}#ade20k). For a first try '
               'without downloading, tools/dataset_converters/'
               'make_toy_ade20k.py writes a small generated dataset in this '
               'layout.'),
    'Coco': ('COCO 2017: download train2017, val2017 and '
             'annotations_trainval2017 from https://cocodataset.org/#download '
             f'and unzip them into data/coco/ (see {MMDET_DATA_DOCS}). For a '
             'first try without downloading, tools/dataset_converters/'
             'make_toy_coco.py writes a small generated COCO-format '
             'dataset.'),
}
# Where the released backbone checkpoints our configs name can be downloaded.
RELEASED_CHECKPOINTS = {
    f'vim_{size[0]}_midclstok_{accuracy}acc.pth':
    f'https://huggingface.co/hustvl/Vim-{size}-midclstok/resolve/main/'
    f'vim_{size[0]}_midclstok_{accuracy}acc.pth'
    for size, accuracy in (('tiny', '76p1'), ('small', '80p5'),
                           ('base', '81p9'))
}


class RunSetupError(RuntimeError):
    """A problem with the run's inputs, reported to the user without a
    traceback."""


def dataset_configs(node) -> Iterator[dict]:
    """Yields every dataset config, looking inside wrappers such as
    RepeatDataset (``dataset=``) and ConcatDataset (``datasets=[...]``)."""
    if isinstance(node, dict):
        if 'data_root' in node or 'ann_file' in node:
            yield node
        for key in ('dataset', 'datasets'):
            yield from dataset_configs(node.get(key))
    elif isinstance(node, (list, tuple)):
        for child in node:
            yield from dataset_configs(child)


def _expected_paths(dataset: dict) -> Iterator[str]:
    root = dataset.get('data_root') or ''
    yield root
    if dataset.get('ann_file'):
        yield osp.join(root, dataset['ann_file'])
    for prefix in (dataset.get('data_prefix') or {}).values():
        if isinstance(prefix, str) and prefix:
            yield osp.join(root, prefix)


def _unusable_files(dataset: dict) -> Iterator[str]:
    """Problems of the dataset's existing folders and annotation file: an
    image folder without files, zero-byte files (a failed download or
    copy), which the loaders report without naming them."""
    root = dataset.get('data_root') or ''
    ann_file = dataset.get('ann_file')
    if ann_file and '://' not in root:
        path = osp.join(root, ann_file)
        if osp.isfile(path) and osp.getsize(path) == 0:
            yield f'{osp.abspath(path)} is empty (0 bytes).'
    for prefix in (dataset.get('data_prefix') or {}).values():
        folder = osp.join(root, prefix) if isinstance(prefix, str) else ''
        if not prefix or '://' in folder or not osp.isdir(folder):
            continue
        files, empty = 0, []
        for directory, _, names in os.walk(folder):
            for name in names:
                files += 1
                if osp.getsize(osp.join(directory, name)) == 0:
                    empty.append(osp.join(directory, name))
        if not files:
            yield f'{osp.abspath(folder)} holds no files.'
        elif empty:
            more = f' and {len(empty) - 3} more' if len(empty) > 3 else ''
            yield (f'{len(empty)} empty (0-byte) files in '
                   f'{osp.abspath(folder)}: '
                   f'{", ".join(map(osp.basename, empty[:3]))}{more}; '
                   'download or copy them again.')


def check_datasets_exist(cfg, dataloader_keys: Sequence[str]) -> None:
    """Raises RunSetupError naming each missing dataset path of the listed
    dataloaders (e.g. 'train_dataloader') and how to get the data, and each
    folder without files or with zero-byte files."""
    missing: Dict[str, List[str]] = {}  # path -> dataloaders needing it
    sources: Dict[str, str] = {}
    unusable: Dict[str, List[str]] = {}  # problem -> dataloaders
    for key in dataloader_keys:
        loader = cfg.get(key)
        if not loader:
            continue
        for dataset in dataset_configs(loader.get('dataset')):
            path = next((path for path in _expected_paths(dataset)
                         if path and '://' not in path
                         and not osp.exists(path)), None)
            if path is None:
                for problem in _unusable_files(dataset):
                    unusable.setdefault(problem, []).append(key)
                continue
            path = osp.abspath(path)
            missing.setdefault(path, []).append(key)
            dataset_type = str(dataset.get('type', '')).lower()
            sources[path] = next(
                (text for name, text in DATASET_SOURCES.items()
                 if name.lower() in dataset_type),
                f'See {MMSEG_DATA_DOCS} or {MMDET_DATA_DOCS}.')
    if missing:
        lines = [
            f'{path} does not exist (needed by {", ".join(keys)}).\n'
            f'  {sources[path]}' for path, keys in missing.items()
        ]
        raise RunSetupError(
            'dataset not found. Paths are relative to the current directory;'
            ' data elsewhere: --cfg-options <dataloader>.dataset.data_root='
            'PATH\n' + '\n'.join(lines))
    if unusable:
        raise RunSetupError('dataset unusable:\n' + '\n'.join(
            f'{problem} (needed by {", ".join(keys)})'
            for problem, keys in unusable.items()))


def _pretrained_checkpoints(node, key: str) -> Iterator[Tuple[str, str]]:
    """Yields (config key, path) of every ``Pretrained`` init_cfg."""
    if isinstance(node, dict):
        if node.get('type') == 'Pretrained' and node.get('checkpoint'):
            yield f'{key}.checkpoint', str(node['checkpoint'])
        for name, child in node.items():
            yield from _pretrained_checkpoints(child, f'{key}.{name}')
    elif isinstance(node, (list, tuple)):
        for index, child in enumerate(node):
            yield from _pretrained_checkpoints(child, f'{key}.{index}')


def check_pretrained_exist(cfg) -> None:
    """Raises RunSetupError naming each local ``Pretrained`` checkpoint of
    the model that is missing, with where to download it."""
    lines = []
    for key, path in _pretrained_checkpoints(cfg.get('model'), 'model'):
        if '://' in path or osp.isfile(path):
            continue
        url = RELEASED_CHECKPOINTS.get(osp.basename(path))
        source = (f'download it: wget -P {osp.dirname(path) or "."} {url}'
                  if url else 'fix the path')
        lines.append(f'{osp.abspath(path)} does not exist ({key}).\n'
                     f'  Either {source}, or pass another path: '
                     f'--cfg-options {key}=PATH')
    if lines:
        raise RunSetupError(
            'pretrained checkpoint not found. Paths are relative to the '
            'current directory; to train from scratch instead, set the '
            'init_cfg to None (e.g. --cfg-options '
            'model.backbone.init_cfg=None).\n' + '\n'.join(lines))


def check_writable(path: str, option: str) -> None:
    """Raises RunSetupError unless files can be created in the folder
    ``path`` or, while it does not exist, in its nearest existing parent
    (where it would be created). ``option`` names the setting, e.g.
    '--work-dir'."""
    folder = osp.abspath(path)
    while not osp.isdir(folder):
        if osp.lexists(folder):
            raise RunSetupError(
                f'{option} {path}: {folder} is a file, not a folder; choose '
                f'another {option}.')
        folder = osp.dirname(folder)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise RunSetupError(
            f'{option} {path}: cannot write in {folder} ({error.strerror}). '
            f'Make it writable, or choose another {option}.') from None


def check_checkpoint_loads(path: str, option: str) -> None:
    """Raises RunSetupError unless the local checkpoint ``path`` exists
    and reads as a checkpoint holding weights (its tensors are mapped, not
    read); ``option`` names where it was given. URLs are left to the
    loader."""
    if '://' in str(path):
        return
    if not osp.isfile(path):
        raise RunSetupError(f'{option} {path}: no such file.')
    try:
        checkpoint = load_checkpoint_file(path, mmap=True)
    except ValueError as error:
        raise RunSetupError(f'{option}: {error}') from None
    weights = state_dict_of(checkpoint)
    if not isinstance(weights, dict) or not any(
            isinstance(value, torch.Tensor) for value in weights.values()):
        raise RunSetupError(
            f'{option} {path} holds no weights (no state_dict); use a '
            'checkpoint saved by tools/train.py or publish_model.py.')
