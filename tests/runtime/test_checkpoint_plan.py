"""What a run resumes from, and that it never writes over earlier
checkpoints, wherever and however the config's CheckpointHook names them."""
import os
import shutil

import pytest
import torch
from mmengine.config import Config

from mmvim.runtime import (
    RunSetupError,
    apply_checkpoint_plan,
    checkpoint_layout,
    plan_checkpoints,
)


def run_cfg(work_dir, **checkpoint_hook):
    checkpoint_hook.setdefault('by_epoch', False)
    return Config(
        dict(
            work_dir=str(work_dir),
            default_hooks=dict(
                checkpoint=dict(type='CheckpointHook', **checkpoint_hook))))


def save_resumable(path, step):
    """A checkpoint as the Runner saves it, at iteration ``step``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        dict(
            meta=dict(iter=step, epoch=0),
            state_dict={'w': torch.full((2, ), float(step))},
            message_hub=dict(log_scalars={}, runtime_info={},
                             resumed_keys={}),
            optimizer=dict(state={}, param_groups=[])), path)
    return path


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_fresh_run_refused_wherever_checkpoints_are_saved(tmp_path):
    work_dir = tmp_path / 'work'
    plan_checkpoints(run_cfg(work_dir), None)  # nothing there yet
    # custom names, custom folder: mmengine saves to out_dir/<work dir name>
    cfg = run_cfg(work_dir, out_dir=str(tmp_path / 'store'),
                  filename_tmpl='ckpt_{}.pt')
    assert checkpoint_layout(cfg).directory == str(tmp_path / 'store/work')
    save_resumable(tmp_path / 'store/work/ckpt_2.pt', 2)
    with pytest.raises(RunSetupError, match='ckpt_2.pt'):
        plan_checkpoints(cfg, None)
    # a work dir whose last run saved elsewhere still has last_checkpoint
    work_dir.mkdir()
    (work_dir / 'last_checkpoint').write_text('/elsewhere/iter_9.pth')
    with pytest.raises(RunSetupError, match='last_checkpoint'):
        plan_checkpoints(run_cfg(work_dir), None)


def test_resume_takes_the_newest_checkpoint_that_loads(tmp_path, capsys):
    for step in (2, 4, 6):
        save_resumable(tmp_path / f'iter_{step}.pth', step)
    truncate(tmp_path / 'iter_6.pth')
    (tmp_path / 'iter_8.pth').touch()  # killed before a byte was written
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_8.pth'))
    cfg = run_cfg(tmp_path)

    plan = plan_checkpoints(cfg, 'auto')
    assert plan.resume_from == str(tmp_path / 'iter_4.pth')
    assert sorted(plan.set_aside) == [
        str(tmp_path / 'iter_6.pth'), str(tmp_path / 'iter_8.pth')]
    apply_checkpoint_plan(cfg, plan)
    assert cfg.resume is True and cfg.load_from == plan.resume_from
    said = capsys.readouterr().out
    assert 'resuming from' in said and 'iter_4.pth (iter 4)' in said
    assert 'iter_6.pth (' in said and 'iter_8.pth (the file is empty)' in said
    # kept under another name, so the run can save those steps again
    assert (tmp_path / 'iter_6.pth.unreadable').exists()
    assert not (tmp_path / 'iter_6.pth').exists()


def test_resume_of_an_older_copy_refused(tmp_path):
    for step in (2, 4):
        save_resumable(tmp_path / f'iter_{step}.pth', step)
    # a renamed copy of iter_2: the step comes from the file, not its name
    copy = save_resumable(tmp_path / 'iter_2_copy.pth', 2)
    with pytest.raises(RunSetupError, match='overwrite the later '
                       'checkpoints iter_4.pth'):
        plan_checkpoints(run_cfg(tmp_path), str(copy))
    assert plan_checkpoints(run_cfg(tmp_path), str(
        tmp_path / 'iter_4.pth')).resume_from == str(tmp_path / 'iter_4.pth')
    # an older checkpoint is fine once the later ones do not load
    truncate(tmp_path / 'iter_4.pth')
    plan = plan_checkpoints(run_cfg(tmp_path), str(copy))
    assert plan.resume_from == str(copy)
    assert plan.set_aside == [str(tmp_path / 'iter_4.pth')]


def test_resume_of_a_file_that_cannot_be_resumed(tmp_path):
    weights_only = tmp_path / 'published.pth'
    torch.save({'state_dict': {}, 'meta': {}}, weights_only)
    with pytest.raises(RunSetupError, match='no message_hub'):
        plan_checkpoints(run_cfg(tmp_path / 'work'), str(weights_only))
    with pytest.raises(RunSetupError, match='cannot resume'):
        plan_checkpoints(run_cfg(tmp_path / 'work'), str(tmp_path / 'none'))


def test_copied_work_dir_resumes_its_own_files(tmp_path, capsys):
    original, copy = tmp_path / 'original', tmp_path / 'copy'
    for folder in (original, copy):
        save_resumable(folder / 'iter_2.pth', 2)
        # mmengine writes an absolute path; the copy keeps the original's
        (folder / 'last_checkpoint').write_text(str(original / 'iter_2.pth'))
    plan = plan_checkpoints(run_cfg(copy), 'auto')
    assert plan.resume_from == str(copy / 'iter_2.pth')
    assert any('outside' in note for note in plan.notes)


def test_nothing_to_resume_keeps_load_from_and_says_so(tmp_path, capsys):
    cfg = run_cfg(tmp_path / 'work')
    cfg.load_from = 'pretrained/upernet.pth'
    (tmp_path / 'work').mkdir()
    # a kill during the first save: only a stale temporary is there
    stale = tmp_path / 'work' / '.iter_1.pth.999999999.tmp'
    stale.write_bytes(b'partial')
    (tmp_path / 'work' / 'last_checkpoint').write_text('')
    plan = plan_checkpoints(cfg, 'auto')
    assert plan.resume_from is None
    apply_checkpoint_plan(cfg, plan)
    assert cfg.resume is False
    assert cfg.load_from == 'pretrained/upernet.pth'
    said = capsys.readouterr().out
    assert 'nothing to resume' in said
    assert 'load_from=pretrained/upernet.pth' in said
    assert 'last_checkpoint is empty' in said
    assert not stale.exists()
    assert os.listdir(tmp_path / 'work') == ['last_checkpoint']


def test_resume_says_load_from_is_not_used(tmp_path):
    save_resumable(tmp_path / 'iter_2.pth', 2)
    cfg = run_cfg(tmp_path)
    cfg.load_from = 'pretrained/upernet.pth'
    plan = plan_checkpoints(cfg, 'auto')
    assert any('load_from=pretrained/upernet.pth is not used' in note
               for note in plan.notes)


def test_a_newer_checkpoint_that_loads_is_never_set_aside(tmp_path):
    save_resumable(tmp_path / 'iter_2.pth', 2)
    # loads, but without a message hub it cannot be resumed
    torch.save({'state_dict': {}, 'meta': {'iter': 4}},
               tmp_path / 'iter_4.pth')
    with pytest.raises(RunSetupError, match='overwrite the later '
                       'checkpoints iter_4.pth'):
        plan_checkpoints(run_cfg(tmp_path), 'auto')
    assert (tmp_path / 'iter_4.pth').exists()


def test_a_resumed_copy_never_deletes_the_original_best_checkpoint(
        tmp_path, tiny_runner):
    original, copy = tmp_path / 'runA', tmp_path / 'runB'
    tiny_runner(original, max_iters=2, validate=True).train()
    best = original / 'best_score_iter_2.pth'
    kept = best.read_bytes()
    shutil.copytree(original, copy)
    # the copy's message hub names runA's best by its absolute path; a new
    # best at iteration 4 would make mmengine delete that file
    runner = tiny_runner(copy, max_iters=4, validate=True, resume=True,
                         load_from=str(copy / 'iter_2.pth'))
    runner.train()
    assert best.read_bytes() == kept
    assert (copy / 'best_score_iter_4.pth').exists()
    # the copy's own earlier best is kept too: it did not write it
    assert (copy / 'best_score_iter_2.pth').read_bytes() == kept
    # and so in a run resumed in its own folder; a best this process saved
    # is replaced by its next one, as mmengine does
    runner = tiny_runner(original, max_iters=8, validate=True, resume=True,
                         load_from=str(original / 'iter_2.pth'))
    runner.train()
    assert sorted(path.name for path in original.glob('best_*')) == [
        'best_score_iter_2.pth', 'best_score_iter_8.pth']


def test_resume_ranks_checkpoints_by_the_step_they_hold(tmp_path, capsys):
    save_resumable(tmp_path / 'iter_4.pth', 4)
    # a later checkpoint under an earlier step's name (renamed, copied)
    save_resumable(tmp_path / 'iter_2.pth', 6)
    plan = plan_checkpoints(run_cfg(tmp_path), 'auto')
    assert plan.resume_from == str(tmp_path / 'iter_2.pth')
    assert f'resuming from {tmp_path / "iter_2.pth"} (iter 6).' in plan.notes
    # named after a step the resumed run saves again: in the way
    save_resumable(tmp_path / 'iter_8.pth', 3)
    with pytest.raises(RunSetupError, match='overwrite the later '
                       'checkpoints iter_8.pth'):
        plan_checkpoints(run_cfg(tmp_path), 'auto')


@pytest.mark.parametrize('template', ['ckpt.pth', 'ckpt_{}_{}.pth',
                                      'ckpt_{step}.pth'])
def test_a_checkpoint_name_without_a_step_is_named(tmp_path, template):
    with pytest.raises(RunSetupError, match='filename_tmpl=.* needs exactly '
                       'one {}'):
        plan_checkpoints(run_cfg(tmp_path, filename_tmpl=template), None)
