"""Every sample of a run's datasets checked before the model is built.

mmseg and mmdet list a dataset's files when it is built and read each one
only when a batch needs it: a missing annotation, a picture that does not
decode, a label map of another size than its picture or a class index the
model does not have stop the run hours in, with a traceback from a data
worker or from the loss. :func:`check_dataset_samples` builds each dataset
of the run (without its pipeline, so nothing is decoded for it) and reads
every picture's header and every segmentation label map once, in parallel
threads; the problems are named together, with the files (the first
:data:`SHOWN_PROBLEMS` of each dataset), in one line.
"""
import importlib
import os
import os.path as osp
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Optional, Sequence

import numpy as np
from PIL import Image

from .run_guards import RunSetupError, dataset_configs

# Problems named per dataset before '... and N more'.
SHOWN_PROBLEMS = 3


def _picture_size(path: str) -> tuple:
    """(width, height) from the file's header; OSError if it is missing or
    not a picture."""
    with Image.open(path) as picture:
        return picture.size


def _label_values(path: str) -> np.ndarray:
    """The distinct values of a label map, as mmseg's LoadAnnotations reads
    it (pillow, unchanged, uint8)."""
    with Image.open(path) as picture:
        return np.unique(np.asarray(picture).astype(np.uint8))


def _mmseg_label_range(info: dict, num_classes: int, ignore_index: int):
    """The values a raw label map may hold, given mmseg's reduction of 0
    and its label map."""
    allowed = set(range(num_classes)) | {ignore_index}
    raw = np.arange(256)
    if info.get('reduce_zero_label'):
        reduced = np.where(raw == 0, 255, raw - 1)
        reduced[reduced == 254] = 255
    else:
        reduced = raw
    label_map = info.get('label_map') or {}
    mapped = np.array([label_map.get(int(value), int(value))
                       for value in reduced])
    return {int(value) for value, result in zip(raw, mapped)
            if int(result) in allowed}


def _sample_problems(info: dict, num_classes: Optional[int],
                     ignore_index: int) -> List[str]:
    """What is wrong with one sample (``info``: an entry of the dataset's
    data list)."""
    image = info.get('img_path')
    try:
        size = _picture_size(image)
    except OSError as error:
        reason = ('missing' if not osp.exists(image) else
                  f'not a picture ({error})')
        return [f'{image}: {reason}']
    expected = (info.get('width'), info.get('height'))
    if all(expected) and tuple(expected) != size:
        return [f'{image}: {size[0]}x{size[1]}, but the annotation says '
                f'{expected[0]}x{expected[1]}']
    labels = info.get('seg_map_path')
    if not labels:
        return []
    try:
        label_size = _picture_size(labels)
    except OSError as error:
        reason = (f'missing (the label map of {osp.basename(image)})'
                  if not osp.exists(labels) else f'not a picture ({error})')
        return [f'{labels}: {reason}']
    if label_size != size:
        return [f'{labels}: {label_size[0]}x{label_size[1]}, its picture '
                f'{osp.basename(image)} {size[0]}x{size[1]}']
    if num_classes is None:
        return []
    allowed = _mmseg_label_range(info, num_classes, ignore_index)
    wrong = sorted(set(_label_values(labels).tolist()) - allowed)
    if wrong:
        return [f'{labels}: label values {wrong} outside the '
                f'{num_classes} classes' +
                (' (0 is unlabelled, classes are 1..N: reduce_zero_label)'
                 if info.get('reduce_zero_label') else '')]
    return []


def _problems(dataset) -> Iterator[str]:
    """The problems of every sample of a built dataset."""
    classes = (dataset.metainfo or {}).get('classes')
    is_segmentation = hasattr(dataset, 'ignore_index')
    num_classes = len(classes) if classes and is_segmentation else None
    ignore_index = getattr(dataset, 'ignore_index', 255)
    infos = [dataset.get_data_info(index) for index in range(len(dataset))]
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        for found in pool.map(
                lambda info: _sample_problems(info, num_classes,
                                              ignore_index), infos):
            yield from found


def _build(dataset_cfg: dict, scope: str):
    """The dataset of ``dataset_cfg`` with its file list, without its
    pipeline."""
    registry = importlib.import_module(f'{scope}.registry').DATASETS
    dataset_cfg = dict(dataset_cfg, pipeline=[], serialize_data=False,
                       lazy_init=False)
    return registry.build(dataset_cfg)


def check_dataset_samples(cfg, dataloader_keys: Sequence[str]) -> None:
    """Raises RunSetupError naming the samples of the listed dataloaders'
    datasets (e.g. 'train_dataloader') that cannot be used: a picture or
    label map missing or not a picture, a label map of another size than
    its picture (or a picture of another size than its annotation says),
    label values outside the classes; and a dataset whose file list cannot
    be read. Run after :func:`check_datasets_exist` (the folders exist)."""
    scope = cfg.get('default_scope') or 'mmengine'
    reports = []
    seen = set()
    for key in dataloader_keys:
        loader = cfg.get(key)
        if not loader:
            continue
        for dataset_cfg in dataset_configs(loader.get('dataset')):
            name = repr(sorted(dataset_cfg.items(), key=str))
            if name in seen:
                continue
            seen.add(name)
            try:
                dataset = _build(dataset_cfg, scope)
            except Exception as error:  # noqa: BLE001 - reported, not lost
                reason = (str(error).strip().splitlines() or [''])[0]
                reports.append(f'{key}: the dataset cannot be read '
                             f'({type(error).__name__}: {reason})')
                continue
            problems = list(_problems(dataset))
            if problems:
                more = len(problems) - SHOWN_PROBLEMS
                reports.append(
                    f'{key}: {len(problems)} unusable sample(s): ' +
                    '; '.join(problems[:SHOWN_PROBLEMS]) +
                    (f'; ... and {more} more' if more > 0 else ''))
    if reports:
        raise RunSetupError('dataset unusable: ' + ' | '.join(reports) +
                            '.\nFix or remove these files.')
