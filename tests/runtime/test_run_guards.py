"""The pre-run checks: missing or unusable datasets, missing pretrained
checkpoints, checkpoints that do not load, folders that cannot be
written."""
import pytest
import torch
from mmengine.config import Config

from mmvim.runtime import (
    RunSetupError,
    check_checkpoint_loads,
    check_datasets_exist,
    check_pretrained_exist,
    check_writable,
)


def ade_like_cfg(data_root):
    dataset = dict(
        type='ADE20KDataset',
        data_root=str(data_root),
        data_prefix=dict(
            img_path='images/training',
            seg_map_path='annotations/training'))
    return Config(
        dict(
            train_dataloader=dict(
                dataset=dict(type='RepeatDataset', times=2, dataset=dataset)),
            val_dataloader=None))


def test_missing_dataset_names_path_and_source(tmp_path):
    data_root = tmp_path / 'data/ade/ADEChallengeData2016'
    with pytest.raises(RunSetupError) as error:
        check_datasets_exist(
            ade_like_cfg(data_root), ('train_dataloader', 'val_dataloader'))
    message = str(error.value)
    assert str(data_root) in message
    assert 'ADEChallengeData2016.zip' in message
    assert 'dataset_prepare' in message


def test_missing_subfolder_is_reported(tmp_path):
    (tmp_path / 'images/training').mkdir(parents=True)
    with pytest.raises(RunSetupError, match='annotations/training'):
        check_datasets_exist(ade_like_cfg(tmp_path), ('train_dataloader', ))
    (tmp_path / 'annotations/training').mkdir(parents=True)
    (tmp_path / 'images/training/a.jpg').write_bytes(b'jpeg')
    (tmp_path / 'annotations/training/a.png').write_bytes(b'png')
    check_datasets_exist(ade_like_cfg(tmp_path), ('train_dataloader', ))


def test_coco_hint(tmp_path):
    cfg = Config(
        dict(
            test_dataloader=dict(
                dataset=dict(
                    type='CocoDataset',
                    data_root=str(tmp_path / 'coco'),
                    ann_file='annotations/instances_val2017.json'))))
    with pytest.raises(RunSetupError, match='cocodataset.org'):
        check_datasets_exist(cfg, ('test_dataloader', ))


def test_empty_folders_and_zero_byte_files_are_named(tmp_path):
    images, labels = tmp_path / 'images/training', tmp_path / (
        'annotations/training')
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    with pytest.raises(RunSetupError) as error:
        check_datasets_exist(ade_like_cfg(tmp_path), ('train_dataloader', ))
    assert f'{images} holds no files' in str(error.value)
    assert f'{labels} holds no files' in str(error.value)

    (images / 'a.jpg').write_bytes(b'jpeg')
    (images / 'b.jpg').touch()  # an interrupted download
    (labels / 'a.png').write_bytes(b'png')
    (labels / 'b.png').write_bytes(b'png')
    with pytest.raises(RunSetupError, match=r'1 empty \(0-byte\) files in '
                       f'{images}: b.jpg'):
        check_datasets_exist(ade_like_cfg(tmp_path), ('train_dataloader', ))
    (images / 'b.jpg').write_bytes(b'jpeg')
    check_datasets_exist(ade_like_cfg(tmp_path), ('train_dataloader', ))


def test_empty_annotation_file_is_named(tmp_path):
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations/instances_val2017.json').touch()
    cfg = Config(
        dict(
            test_dataloader=dict(
                dataset=dict(
                    type='CocoDataset',
                    data_root=str(tmp_path),
                    ann_file='annotations/instances_val2017.json'))))
    with pytest.raises(RunSetupError, match='instances_val2017.json is empty'):
        check_datasets_exist(cfg, ('test_dataloader', ))


def test_missing_pretrained_checkpoint_names_key_and_download(tmp_path):
    checkpoint = tmp_path / 'checkpoints/vim_t_midclstok_76p1acc.pth'
    cfg = Config(
        dict(
            model=dict(
                backbone=dict(
                    init_cfg=dict(
                        type='Pretrained', checkpoint=str(checkpoint))),
                neck=dict(init_cfg=[
                    dict(type='Pretrained',
                         checkpoint='https://example.org/neck.pth')
                ]))))
    with pytest.raises(RunSetupError) as error:
        check_pretrained_exist(cfg)
    message = str(error.value)
    assert str(checkpoint) in message
    assert 'model.backbone.init_cfg.checkpoint' in message
    assert ('huggingface.co/hustvl/Vim-tiny-midclstok/resolve/main/'
            'vim_t_midclstok_76p1acc.pth') in message
    assert 'neck' not in message  # URLs are left to the loader
    checkpoint.parent.mkdir()
    checkpoint.touch()
    check_pretrained_exist(cfg)


def test_a_work_dir_that_cannot_be_written_is_named(tmp_path, read_only):
    check_writable(str(tmp_path / 'new/work'), '--work-dir')
    locked = read_only(tmp_path / 'locked')
    for path in (locked, locked / 'work'):
        with pytest.raises(RunSetupError, match=f'--work-dir {path}: cannot '
                           f'write in {locked}'):
            check_writable(str(path), '--work-dir')
    (tmp_path / 'file').write_text('')
    with pytest.raises(RunSetupError, match='is a file, not a folder'):
        check_writable(str(tmp_path / 'file/work'), '--work-dir')


def test_a_checkpoint_that_does_not_load_is_named(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.zeros(4)}}, good)
    check_checkpoint_loads(str(good), 'load_from')
    with pytest.raises(RunSetupError, match='load_from .*none.pth: no such '
                       'file'):
        check_checkpoint_loads(str(tmp_path / 'none.pth'), 'load_from')
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    for bad in (truncated, text):
        with pytest.raises(RunSetupError, match=f'load_from: {bad} could not '
                           'be read as a PyTorch checkpoint'):
            check_checkpoint_loads(str(bad), 'load_from')
    empty = tmp_path / 'empty.pth'
    torch.save({'meta': {}}, empty)
    with pytest.raises(RunSetupError, match='holds no weights'):
        check_checkpoint_loads(str(empty), 'checkpoint')
