"""Segmentation end to end through mmengine's Runner, on generated toy data:
train, validate with IoUMetric, save, resume, test. Also the toy generator.
"""
import numpy as np
import pytest
from mmengine.hooks import Hook
from PIL import Image

# Read by the `toy` and `quickstart_cfg` fixtures (tests/tools/conftest.py).
TOY_GENERATOR = 'tools/dataset_converters/make_toy_ade20k.py'
QUICKSTART = 'configs/ade20k/quickstart_upernet_vim_tiny_toy.py'


def test_toy_dataset_layout_and_labels(tmp_path, toy):
    root = toy.make_toy_ade20k(
        tmp_path / 'toy', num_train=3, num_val=2, size=(64, 48))
    for split, count in (('training', 3), ('validation', 2)):
        images = sorted((root / 'images' / split).glob('*.jpg'))
        labels = sorted((root / 'annotations' / split).glob('*.png'))
        assert len(images) == len(labels) == count
        assert [p.stem for p in images] == [p.stem for p in labels]
    image = Image.open(images[0])
    label = np.array(Image.open(labels[0]))
    assert image.size == (64, 48) and image.mode == 'RGB'
    assert label.shape == (48, 64) and label.dtype == np.uint8
    # 0 = unlabelled outlines, then the classes 1..5 (ADE20K convention).
    assert 0 in label and label.max() <= len(toy.CLASSES)
    assert {toy.SKY, toy.GRASS} <= set(np.unique(label))


def test_toy_dataset_is_deterministic_and_kept(tmp_path, toy):
    first = toy.make_toy_ade20k(tmp_path / 'a', 2, 1, (48, 48), seed=3)
    second = toy.make_toy_ade20k(tmp_path / 'b', 2, 1, (48, 48), seed=3)
    for path in (first / 'annotations').rglob('*.png'):
        assert (path.read_bytes() == (second / path.relative_to(first)
                                      ).read_bytes())
    with pytest.raises(FileExistsError):
        toy.make_toy_ade20k(first, 1, 1, (48, 48))
    (first / 'notes.txt').write_text('keep me')
    toy.make_toy_ade20k(first, 1, 1, (48, 48), overwrite=True)
    assert len(list((first / 'images' / 'training').iterdir())) == 1
    assert (first / 'notes.txt').read_text() == 'keep me'


@pytest.mark.parametrize('option,value', [('--num-train', '-3'),
                                          ('--num-val', '0'),
                                          ('--size', 'x')])
def test_toy_generator_refuses_counts_below_one(tmp_path, tool_main, capsys,
                                                option, value):
    arguments = [tmp_path / 'toy', option, value]
    if option == '--size':
        arguments.append(32)
    with pytest.raises(SystemExit) as stop:
        tool_main(TOY_GENERATOR, *arguments)
    assert stop.value.code == 2  # argparse's
    assert (f'argument {option}: {value} is not a whole number of 1 or '
            'more') in capsys.readouterr().err
    assert not (tmp_path / 'toy').exists()


def test_quickstart_config_names_the_generated_classes(quickstart_cfg, toy):
    meta = quickstart_cfg.train_dataloader.dataset.metainfo
    assert tuple(meta.classes) == toy.CLASSES
    assert len(meta.palette) == len(toy.CLASSES)


class StartIteration(Hook):
    """Remembers the iteration training (re)starts from."""

    def before_train(self, runner):
        self.iter = runner.iter


@pytest.fixture
def make_runner(quickstart_cfg, short_run):
    """A short run of the quickstart with a 4-layer 32-wide Vim and UperNet,
    in this process (no dataloader workers)."""

    def make(data_root, work_dir, name, max_iters, **extra):
        options = {}
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader'):
            options[f'{loader}.num_workers'] = 0
            options[f'{loader}.persistent_workers'] = False
        options.update({
            'model.backbone.arch': dict(
                _delete_=True, embed_dims=32, num_layers=4),
            'model.backbone.out_indices': (0, 1, 2, 3),
            'optim_wrapper.paramwise_cfg.num_layers': 4,
            'model.neck.embed_dim': 32,
            'model.decode_head.in_channels': [32] * 4,
            'model.decode_head.channels': 32,
            'model.auxiliary_head.in_channels': 32,
            'model.auxiliary_head.channels': 32,
        })
        options.update(extra)
        return short_run(quickstart_cfg, str(data_root), work_dir, name,
                         max_iters, **options)

    return make


@pytest.mark.slow  # trains, validates and resumes a run
def test_train_validate_resume_test(tmp_path, make_runner, toy):
    data_root = toy.make_toy_ade20k(
        tmp_path / 'data', num_train=8, num_val=2, size=(64, 64))
    work_dir = tmp_path / 'work'

    runner = make_runner(data_root, work_dir, 'train', max_iters=2)
    runner.train()
    assert (work_dir / 'iter_2.pth').is_file()
    metrics = runner.message_hub.get_scalar('val/mIoU').current()
    assert 0 <= metrics <= 100

    # An interrupted run continues from its latest checkpoint.
    start = StartIteration()
    runner = make_runner(
        data_root,
        work_dir,
        'resume',
        max_iters=4,
        resume=True,
        val_cfg=None,  # validated above; saves a few seconds
        val_dataloader=None,
        val_evaluator=None)
    runner.register_hook(start)
    runner.train()
    assert start.iter == 2
    assert (work_dir / 'iter_4.pth').is_file()

    runner = make_runner(
        data_root,
        work_dir,
        'test',
        max_iters=4,
        load_from=str(work_dir / 'iter_4.pth'))
    metrics = runner.test()
    assert set(metrics) >= {'aAcc', 'mIoU', 'mAcc'}
    assert 0 <= metrics['mIoU'] <= 100
