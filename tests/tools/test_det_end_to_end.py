"""Detection end to end through mmengine's Runner, on generated toy COCO
data: train, validate with CocoMetric (bbox + segm), save, resume. Also the
toy generator."""
import json

import pytest
import torch
from mmengine.hooks import Hook

# Read by the `toy` and `quickstart_cfg` fixtures (tests/tools/conftest.py).
TOY_GENERATOR = 'tools/dataset_converters/make_toy_coco.py'
QUICKSTART = 'configs/coco/quickstart_cascade_mask_rcnn_vim_tiny_toy.py'


def test_toy_coco_annotations_describe_the_images(tmp_path, toy):
    toy.make_toy_coco(tmp_path, num_train=3, num_val=2, image_size=(48, 64))
    coco = json.loads(
        (tmp_path / 'annotations/instances_train.json').read_text())
    assert len(coco['images']) == 3
    assert [c['name'] for c in coco['categories']] == list(toy.CLASSES)
    assert coco['annotations']
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        xs, ys = ann['segmentation'][0][0::2], ann['segmentation'][0][1::2]
        assert 0 <= x and x + w <= 64 and 0 <= y and y + h <= 48
        assert min(xs) == pytest.approx(x, abs=0.01)
        assert max(ys) == pytest.approx(y + h, abs=0.01)
        assert 0 < ann['area'] <= w * h
    assert len(list((tmp_path / 'val').glob('*.png'))) == 2


def test_toy_coco_is_deterministic_and_not_overwritten(tmp_path, toy):
    toy.make_toy_coco(tmp_path / 'a', 2, 1, (48, 48), seed=3)
    toy.make_toy_coco(tmp_path / 'b', 2, 1, (48, 48), seed=3)
    for path in (tmp_path / 'a').rglob('*.*'):
        twin = tmp_path / 'b' / path.relative_to(tmp_path / 'a')
        assert path.read_bytes() == twin.read_bytes()
    with pytest.raises(FileExistsError):
        toy.make_toy_coco(tmp_path / 'a', 1, 1, (48, 48))
    (tmp_path / 'a' / 'notes.txt').write_text('keep me')
    toy.make_toy_coco(tmp_path / 'a', 1, 1, (48, 48), overwrite=True)
    assert len(list((tmp_path / 'a' / 'train').iterdir())) == 1
    assert (tmp_path / 'a' / 'notes.txt').read_text() == 'keep me'


@pytest.mark.parametrize('arguments', [('--num-train', '-3'),
                                       ('--max-objects', '0'),
                                       ('--image-size', '0', '48')])
def test_toy_coco_refuses_sizes_below_one(tmp_path, tool_main, capsys,
                                          arguments):
    with pytest.raises(SystemExit) as stop:
        tool_main(TOY_GENERATOR, tmp_path / 'toy', *arguments)
    assert stop.value.code == 2  # argparse's
    assert 'is not a whole number of 1 or more' in capsys.readouterr().err
    assert not (tmp_path / 'toy').exists()


def test_quickstart_config_names_the_generated_classes(quickstart_cfg, toy):
    cfg = quickstart_cfg
    assert tuple(cfg.train_dataloader.dataset.metainfo.classes) == \
        toy.CLASSES
    assert all(head.num_classes == len(toy.CLASSES)
               for head in cfg.model.roi_head.bbox_head)


class Recorder(Hook):
    """Remembers where training (re)starts, the weights it starts from and
    the validation metrics."""

    def before_train(self, runner):
        self.start_iter = runner.iter
        self.start_weight = runner.model.backbone.pos_embed.detach().clone()

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = metrics


@pytest.fixture
def make_runner(quickstart_cfg, short_run):
    """A short run of the quickstart with a 2-layer 32-wide Vim; the rest
    of the model is the quickstart's."""

    def make(data_root, work_dir, name, max_iters, **extra):
        data_root = f'{data_root}/'
        options = {
            'model.backbone.arch': dict(embed_dims=32, num_layers=2),
            'model.neck.in_channels': 32,
            'optim_wrapper.paramwise_cfg.num_layers': 2,
            # Keep every box so that CocoMetric always has predictions to
            # score.
            'model.test_cfg.rcnn.score_thr': 0.0,
            'val_evaluator.ann_file':
            data_root + 'annotations/instances_val.json',
        }
        options.update(extra)
        return short_run(quickstart_cfg, data_root, work_dir, f'det_{name}',
                         max_iters, **options)

    return make


@pytest.mark.slow  # trains, validates and resumes a run
def test_train_validate_resume(tmp_path, make_runner, toy):
    data_root = tmp_path / 'data'
    toy.make_toy_coco(data_root, num_train=4, num_val=2)
    work_dir = tmp_path / 'work'

    recorder = Recorder()
    runner = make_runner(data_root, work_dir, 'train', max_iters=2)
    runner.register_hook(recorder)
    runner.train()
    assert (work_dir / 'iter_2.pth').is_file()
    assert set(recorder.metrics) >= {'coco/bbox_mAP', 'coco/segm_mAP'}
    assert all(0 <= recorder.metrics[f'coco/{kind}_mAP'] <= 1
               for kind in ('bbox', 'segm'))
    saved = torch.load(work_dir / 'iter_2.pth', map_location='cpu')

    # An interrupted run continues from its latest checkpoint, weights and
    # iteration count included.
    recorder = Recorder()
    runner = make_runner(
        data_root, work_dir, 'resume', max_iters=4, resume=True)
    runner.register_hook(recorder)
    runner.train()
    assert recorder.start_iter == 2
    torch.testing.assert_close(recorder.start_weight,
                               saved['state_dict']['backbone.pos_embed'])
    assert runner.iter == 4 and (work_dir / 'iter_4.pth').is_file()
