"""Checks the tools run before handing a config to mmengine's Runner.

The failures they catch would otherwise surface late and badly: a missing
dataset as a stack trace deep inside a dataloader worker, a missing backbone
checkpoint only after the datasets are built, a reused work directory as
silently overwritten checkpoints.
"""
import os.path as osp
import re
from glob import glob
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

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
CHECKPOINT_STEP = re.compile(r'(?:iter|epoch)_(\d+)\.pth$')


class RunSetupError(RuntimeError):
    """A problem with the run's inputs, reported to the user without a
    traceback."""


def _dataset_cfgs(node) -> Iterator[dict]:
    """Yields every dataset config, looking inside wrappers such as
    RepeatDataset (``dataset=``) and ConcatDataset (``datasets=[...]``)."""
    if isinstance(node, dict):
        if 'data_root' in node or 'ann_file' in node:
            yield node
        for key in ('dataset', 'datasets'):
            yield from _dataset_cfgs(node.get(key))
    elif isinstance(node, (list, tuple)):
        for child in node:
            yield from _dataset_cfgs(child)


def _expected_paths(dataset: dict) -> Iterator[str]:
    root = dataset.get('data_root') or ''
    yield root
    if dataset.get('ann_file'):
        yield osp.join(root, dataset['ann_file'])
    for prefix in (dataset.get('data_prefix') or {}).values():
        if isinstance(prefix, str) and prefix:
            yield osp.join(root, prefix)


def check_datasets_exist(cfg, dataloader_keys: Sequence[str]) -> None:
    """Raises RunSetupError naming each missing dataset path of the listed
    dataloaders (e.g. 'train_dataloader') and how to get the data."""
    missing: Dict[str, List[str]] = {}  # path -> dataloaders needing it
    sources: Dict[str, str] = {}
    for key in dataloader_keys:
        loader = cfg.get(key)
        if not loader:
            continue
        for dataset in _dataset_cfgs(loader.get('dataset')):
            path = next((path for path in _expected_paths(dataset)
                         if path and '://' not in path
                         and not osp.exists(path)), None)
            if path is None:
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


def _step(checkpoint: str) -> Optional[int]:
    match = CHECKPOINT_STEP.search(osp.basename(checkpoint))
    return int(match.group(1)) if match else None


def check_checkpoints_kept(work_dir: str, resume) -> None:
    """Refuses a run that could overwrite checkpoints already in work_dir.

    mmengine puts logs in a fresh timestamped folder but saves checkpoints
    as ``work_dir/iter_N.pth``, so a new run in a used work directory would
    replace the earlier run's files. Continuing the latest checkpoint is
    safe (``resume='auto'`` or its path): every later save has a higher step.

    Args:
        work_dir: where the run will save checkpoints.
        resume: None/False for a fresh run, 'auto' or True to continue the
            latest checkpoint in work_dir, or a checkpoint path.
    """
    existing = sorted(glob(osp.join(work_dir, '*.pth')))
    if not existing:
        return
    steps = [step for step in map(_step, existing) if step is not None]
    latest_step = max(steps, default=None)
    if resume in ('auto', True):
        if osp.exists(osp.join(work_dir, 'last_checkpoint')):
            return
    elif resume:
        resume_step = _step(resume)
        if resume_step is not None and (latest_step is None
                                        or resume_step >= latest_step):
            return
    names = ', '.join(osp.basename(path) for path in existing[:5])
    raise RunSetupError(
        f'{work_dir} already holds checkpoints ({names}'
        f'{", ..." if len(existing) > 5 else ""}) that this run could '
        'overwrite. Continue that run with --resume (its latest checkpoint) '
        'or start a new one with another --work-dir.')
