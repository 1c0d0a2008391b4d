"""tools/train.py and tools/test.py: missing data, a fresh run in a used
work dir, resume, and testing the result."""
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmvim.runtime import RunSetupError

REPO = Path(__file__).resolve().parents[2]


def test_missing_dataset_stops_with_directions(tmp_path, monkeypatch,
                                               tool_main):
    # from an empty folder, data/ade/ADEChallengeData2016 does not exist
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        tool_main(REPO / 'tools/train.py',
                  REPO / 'configs/ade20k/upernet_vim_tiny.py', '--work-dir',
                  tmp_path / 'work')
    message = str(stop.value.code)
    assert str(tmp_path / 'data/ade/ADEChallengeData2016') in message
    assert 'ADEChallengeData2016.zip' in message
    assert not (tmp_path / 'work').exists()


def test_missing_backbone_checkpoint_stops_before_building(
        tmp_path, monkeypatch, tiny_ade20k_root, tool_main):
    monkeypatch.chdir(tmp_path)
    data = f'{tiny_ade20k_root}/'
    with pytest.raises(SystemExit) as stop:
        tool_main(REPO / 'tools/train.py',
                  REPO / 'configs/ade20k/upernet_vim_tiny.py', '--work-dir',
                  tmp_path / 'work', '--cfg-options',
                  f'train_dataloader.dataset.data_root={data}',
                  f'val_dataloader.dataset.data_root={data}')
    message = str(stop.value.code)
    assert str(tmp_path / 'checkpoints/vim_t_midclstok_76p1acc.pth') in message
    assert 'model.backbone.init_cfg=None' in message
    assert not (tmp_path / 'work').exists()


@pytest.mark.slow
def test_train_refuse_overwrite_resume_and_test(tmp_path, tiny_config,
                                                tool_main):
    work_dir = tmp_path / 'work'

    def train(*options):
        return tool_main('tools/train.py', tiny_config, '--work-dir',
                         work_dir, *options)

    two_iters = ('--cfg-options', 'train_cfg.max_iters=2',
                 'default_hooks.checkpoint.interval=2')
    train(*two_iters)
    first_checkpoint = (work_dir / 'iter_2.pth').read_bytes()
    config_dump = (work_dir / 'tiny_upernet_vim.py').read_bytes()

    with pytest.raises(SystemExit, match='already holds checkpoints'):
        train(*two_iters)
    assert (work_dir / 'iter_2.pth').read_bytes() == first_checkpoint

    train('--resume', '--cfg-options', 'train_cfg.max_iters=4',
          'default_hooks.checkpoint.interval=2')
    assert (work_dir / 'iter_2.pth').read_bytes() == first_checkpoint
    # plain data: torch's weights-only defaults read it, no allow-list
    checkpoint = torch.load(work_dir / 'iter_4.pth', weights_only=True)
    assert checkpoint['meta']['iter'] == 4
    # the lr history continued from the first run's two iterations
    lr_history = checkpoint['message_hub']['log_scalars']['train/lr']
    assert len(lr_history['log_history']) == 4

    metrics = tool_main('tools/test.py', tiny_config, work_dir / 'iter_4.pth',
                        '--work-dir', tmp_path / 'test')
    assert 0 <= metrics['mIoU'] <= 100
    # testing into the training work dir: a log folder of its own, and the
    # training run's config dump kept (the resume above kept it too)
    tool_main('tools/test.py', tiny_config, work_dir / 'iter_4.pth',
              '--work-dir', work_dir, '--cfg-options',
              'test_dataloader.batch_size=2')
    assert (work_dir / 'tiny_upernet_vim.py').read_bytes() == config_dump
    assert len([path for path in work_dir.iterdir() if path.is_dir()]) == 3


def test_amp_picks_bfloat16_where_supported(monkeypatch, tool_module):
    enable_amp = tool_module('tools/train.py').enable_amp

    def optim_cfg():
        return Config(dict(optim_wrapper=dict(optimizer=dict(type='AdamW'))))

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(RunSetupError, match='GPU'):
        enable_amp(optim_cfg())

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    for bf16, dtype in ((True, 'bfloat16'), (False, 'float16')):
        monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: bf16)
        cfg = optim_cfg()
        enable_amp(cfg)
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.dtype == dtype
        assert cfg.optim_wrapper.loss_scale == 'dynamic'


def test_out_keeps_predictions_per_task(tmp_path, tool_module):
    from mmdet.registry import METRICS
    keep_predictions = tool_module('tools/test.py').keep_predictions

    detection = Config(
        dict(
            default_scope='mmdet',
            test_evaluator=dict(type='CocoMetric', metric=['bbox', 'segm'])))
    keep_predictions(detection, str(tmp_path / 'results.pkl'))
    metric_types = [metric['type'] for metric in detection.test_evaluator]
    assert metric_types == ['CocoMetric', 'DumpDetResults']
    assert METRICS.get('DumpDetResults') is not None
    with pytest.raises(RunSetupError, match='.pkl'):
        keep_predictions(detection, str(tmp_path / 'results'))

    segmentation = Config(
        dict(default_scope='mmseg', test_evaluator=dict(type='IoUMetric')))
    keep_predictions(segmentation, str(tmp_path / 'labels'))
    assert segmentation.test_evaluator.output_dir == str(tmp_path / 'labels')


@pytest.mark.slow
def test_test_refuses_weights_that_do_not_fit(tmp_path, tiny_config,
                                              random_checkpoint, tool_main):

    def other_classes(state_dict):  # a head for 3 classes, not 150
        state_dict['decode_head.conv_seg.weight'] = torch.zeros(3, 16, 1, 1)
        state_dict['decode_head.conv_seg.bias'] = torch.zeros(3)

    def backbone_only(state_dict):
        for key in [key for key in state_dict
                    if not key.startswith('backbone.')]:
            del state_dict[key]

    for edit, expected in ((other_classes, 'decode_head.conv_seg.weight '
                            '(3, 16, 1, 1) vs (150, 16, 1, 1)'),
                           (backbone_only, 'decode_head.* (')):
        checkpoint = random_checkpoint(f'{edit.__name__}.pth', edit)
        with pytest.raises(SystemExit) as stop:
            tool_main('tools/test.py', tiny_config, checkpoint,
                      '--work-dir', tmp_path / 'test')
        assert f'{checkpoint} does not fit this model' in str(
            stop.value.code)
        assert expected in str(stop.value.code)


def test_test_never_replaces_earlier_predictions(tmp_path, tiny_config,
                                                 random_checkpoint,
                                                 tool_main):
    out = tmp_path / 'labels'
    out.mkdir()
    (out / 'earlier.png').write_bytes(b'an earlier run')
    with pytest.raises(SystemExit, match='already holds results'):
        tool_main('tools/test.py', tiny_config, random_checkpoint(),
                  '--work-dir', tmp_path / 'test', '--out', out)
    assert os.listdir(out) == ['earlier.png']


@pytest.mark.slow
def test_second_run_refused_with_custom_checkpoint_folder_and_names(
        tmp_path, tiny_config, tool_main):
    store = tmp_path / 'store'
    options = ('--work-dir', tmp_path / 'work', '--cfg-options',
               'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2',
               f'default_hooks.checkpoint.out_dir={store}',
               'default_hooks.checkpoint.filename_tmpl=ckpt_{}.pt')
    tool_main('tools/train.py', tiny_config, *options)
    first = (store / 'work/ckpt_2.pt').read_bytes()
    with pytest.raises(SystemExit, match='ckpt_2.pt'):
        tool_main('tools/train.py', tiny_config, *options)
    assert (store / 'work/ckpt_2.pt').read_bytes() == first


@pytest.mark.slow
def test_resume_skips_a_truncated_newest_checkpoint(tmp_path, tiny_config,
                                                    tool_main, capsys):
    work_dir = tmp_path / 'work'

    def train(*options):
        tool_main('tools/train.py', tiny_config, '--work-dir', work_dir,
                  '--cfg-options', 'default_hooks.checkpoint.interval=1',
                  *options)

    train('train_cfg.max_iters=2')
    newest = (work_dir / 'iter_2.pth').read_bytes()
    (work_dir / 'iter_2.pth').write_bytes(newest[:len(newest) // 3])
    capsys.readouterr()
    train('train_cfg.max_iters=3', '--resume')
    said = capsys.readouterr().out
    assert f'resuming from {work_dir / "iter_1.pth"} (iter 1)' in said
    assert 'iter_2.pth (' in said
    # the damaged file is kept aside; the run saved iter 2 and 3 afresh
    assert (work_dir / 'iter_2.pth.unreadable').read_bytes() == \
        newest[:len(newest) // 3]
    for step in (2, 3):
        saved = torch.load(work_dir / f'iter_{step}.pth', weights_only=True)
        assert saved['meta']['iter'] == step


@pytest.mark.parametrize('options,named', [
    (('train_cfg.max_iter=2', ), "--cfg-options train_cfg.max_iter: "
     "IterBasedTrainLoop takes no 'max_iter' (did you mean max_iters?)"),
    (('default_hooks.checkpoint.filename_tmpl=ckpt.pth', ),
     "filename_tmpl='ckpt.pth' needs exactly one {}"),
])
def test_settings_that_cannot_work_stop_train_before_building(
        tmp_path, tiny_config, tool_main, options, named):
    with pytest.raises(SystemExit) as stop:
        tool_main('tools/train.py', tiny_config, '--work-dir',
                  tmp_path / 'work', '--cfg-options', *options)
    assert named in str(stop.value.code)
    assert not (tmp_path / 'work').exists()
    # --debug: the traceback (the error itself) instead of the message
    with pytest.raises(RunSetupError, match=re.escape(named)):
        tool_main('tools/train.py', tiny_config, '--work-dir',
                  tmp_path / 'work', '--debug', '--cfg-options', *options)


@pytest.mark.slow
def test_an_ops_backend_that_cannot_run_stops_train_in_one_line(
        tmp_path, tiny_config, run_tool):
    result = run_tool(['tools/train.py', tiny_config, '--work-dir',
                       tmp_path / 'work'], MMVIM_OPS_BACKEND='garbage')
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: mmvim ops backend: Unknown mmvim ops backend 'garbage' "
        "($MMVIM_OPS_BACKEND): choose one of ('auto', 'cuda', 'triton', "
        "'cpu', 'torch', 'sequential')."], result.stderr
    assert not (tmp_path / 'work').exists()


def test_checkpoints_that_do_not_load_stop_before_building(
        tmp_path, tiny_config, tool_main):
    damaged = tmp_path / 'damaged.pth'
    damaged.write_bytes(b'PK\x03\x04 not a whole checkpoint')
    with pytest.raises(SystemExit) as stop:
        tool_main('tools/train.py', tiny_config, '--work-dir',
                  tmp_path / 'work', '--cfg-options', f'load_from={damaged}')
    assert str(stop.value.code).startswith(
        f'error: load_from: {damaged} could not be read as a PyTorch '
        'checkpoint')
    with pytest.raises(SystemExit) as stop:
        tool_main('tools/test.py', tiny_config, damaged, '--work-dir',
                  tmp_path / 'work')
    assert str(stop.value.code).startswith(
        f'error: checkpoint: {damaged} could not be read')
    assert not (tmp_path / 'work').exists()


def test_data_that_cannot_be_used_stops_train_before_building(
        tmp_path, tiny_ade20k_root, tiny_config, tool_main, monkeypatch):
    data = tmp_path / 'data'
    shutil.copytree(tiny_ade20k_root, data)
    monkeypatch.setenv('TINY_ADE20K_ROOT', str(data))
    labels = data / 'annotations/validation/toy_00001.png'
    labels.unlink()
    with pytest.raises(SystemExit) as stop:
        tool_main('tools/train.py', tiny_config, '--work-dir',
                  tmp_path / 'work')
    assert (f'val_dataloader: 1 unusable sample(s): {labels}: missing'
            in str(stop.value.code))
    assert not (tmp_path / 'work').exists()


def test_a_read_only_work_dir_is_named_before_building(
        tmp_path, tiny_config, tool_main, read_only):
    work_dir = read_only(tmp_path / 'work')
    checkpoint = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}}, checkpoint)
    for tool, arguments in (('tools/train.py', ('--resume', )),
                            ('tools/test.py', (checkpoint, ))):
        with pytest.raises(SystemExit) as stop:
            tool_main(tool, tiny_config, *arguments, '--work-dir', work_dir)
        assert f'--work-dir {work_dir}: cannot write in {work_dir}' in str(
            stop.value.code)
