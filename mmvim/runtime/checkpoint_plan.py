"""What a training run continues from, decided before the Runner exists.

mmengine's ``resume=True`` trusts ``work_dir/last_checkpoint``: an absolute
path (a copied work dir resumes from the original folder), possibly naming a
missing, empty or truncated file, and with nothing to resume it starts from
scratch and drops ``load_from`` with one log line. :func:`plan_checkpoints`
instead looks at the checkpoints themselves, where the config's
``CheckpointHook`` saves them (``out_dir``, ``filename_tmpl``):

* ``--resume`` alone takes the checkpoint holding the latest step (read
  from the file, not its name) that loads, and says which and why it
  skipped the others;
* no run, fresh or resumed, may later write over a checkpoint already there.

:func:`apply_checkpoint_plan` then sets ``resume``/``load_from`` explicitly,
so mmengine never reads ``last_checkpoint``;
:class:`EarlierBestCheckpointsHook` keeps the best checkpoints saved before
the run resumed, which mmengine would delete (even in another run's folder,
for a copied work dir).
"""
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from glob import glob
from typing import List, Optional, Tuple

from mmengine.hooks import CheckpointHook, Hook

from .atomic_files import stale_temporaries
from .checkpoint_loading import load_checkpoint_file
from .run_guards import RunSetupError

# Where an unreadable checkpoint is moved so that the resumed run can save
# under its name again without destroying it.
UNREADABLE_SUFFIX = '.unreadable'


@dataclass
class CheckpointLayout:
    """Where and under which names the config's CheckpointHook saves."""
    directory: str
    filename_tmpl: str
    by_epoch: bool

    @property
    def step_key(self) -> str:
        """The meta entry the file names count: 'epoch' or 'iter'."""
        return 'epoch' if self.by_epoch else 'iter'

    def checkpoints(self) -> List[Tuple[int, str]]:
        """(step in the name, path) of every file named after the template,
        highest step first."""
        prefix, suffix = re.split(r'\{[^}]*\}', self.filename_tmpl,
                                  maxsplit=1)
        pattern = re.compile(
            re.escape(prefix) + r'(\d+)' + re.escape(suffix) + '$')
        found = []
        if osp.isdir(self.directory):
            for name in os.listdir(self.directory):
                match = pattern.match(name)
                if match:
                    found.append((int(match.group(1)),
                                  osp.join(self.directory, name)))
        return sorted(found, reverse=True)

    def best_checkpoints(self) -> List[str]:
        return sorted(glob(osp.join(glob_escape(self.directory), 'best_*')))


def glob_escape(path: str) -> str:
    return re.sub(r'([*?[])', r'[\1]', path)


def checkpoint_layout(cfg) -> CheckpointLayout:
    """Mirrors mmengine's CheckpointHook: ``out_dir`` other than the work
    dir means ``out_dir/<work dir name>``; the template defaults to
    ``epoch_{}.pth`` or ``iter_{}.pth`` by ``by_epoch``.

    Raises:
        RunSetupError: ``filename_tmpl`` has no single ``{}`` for the step.
    """
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    by_epoch = hook.get('by_epoch', True)
    template = hook.get('filename_tmpl') or (
        'epoch_{}.pth' if by_epoch else 'iter_{}.pth')
    _check_template(str(template))
    work_dir = osp.abspath(cfg.work_dir)
    out_dir = hook.get('out_dir')
    if out_dir is None or str(out_dir) == work_dir:
        directory = work_dir
    else:
        directory = osp.join(str(out_dir), osp.basename(work_dir))
    return CheckpointLayout(osp.abspath(directory), template, by_epoch)


def _check_template(template: str) -> None:
    fields = re.findall(r'\{[^}]*\}', template)
    try:
        usable = len(fields) == 1 and template.format(1) != template
    except (ValueError, IndexError, KeyError):
        usable = False
    if not usable:
        raise RunSetupError(
            f'default_hooks.checkpoint.filename_tmpl={template!r} needs '
            'exactly one {} where the step goes (e.g. \'iter_{}.pth\'); set '
            'it with --cfg-options default_hooks.checkpoint.filename_tmpl='
            'iter_{}.pth')


@dataclass
class CheckpointPlan:
    """The outcome of :func:`plan_checkpoints`."""
    resume_from: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    # Unloadable checkpoints to move to <name>.unreadable (not deleted).
    set_aside: List[str] = field(default_factory=list)
    # Hidden temporaries of writes cut short by a kill (never complete).
    stale_temporaries: List[str] = field(default_factory=list)


class NotResumable(ValueError):
    """A checkpoint that loads but lacks what resuming needs."""


def read_resumable(path: str, step_key: str) -> int:
    """The step (``meta[step_key]``) of a checkpoint a Runner can resume.

    Raises:
        ValueError: the file does not load.
        NotResumable: it loads but lacks what resuming needs.
    """
    if osp.getsize(path) == 0:
        raise ValueError('the file is empty')
    # mapped, not read: only the structure and the meta are needed
    checkpoint = load_checkpoint_file(path, mmap=True)
    if not isinstance(checkpoint, dict):
        raise NotResumable('it holds no checkpoint dict')
    # what mmengine's Runner.resume reads (the optimizer only if saved)
    absent = [key for key in ('meta', 'state_dict', 'message_hub')
              if key not in checkpoint]
    if absent:
        raise NotResumable(f'it has no {", ".join(absent)} (a published or '
                           'weights-only file cannot be resumed)')
    step = checkpoint['meta'].get(step_key)
    if not isinstance(step, int):
        raise NotResumable(f'its meta has no {step_key} count')
    return step


def _reason(error: Exception) -> str:
    return str(error).splitlines()[0][:300]


def _last_checkpoint_note(work_dir: str, directory: str) -> Optional[str]:
    """Says why ``work_dir/last_checkpoint`` is not followed, if it points
    elsewhere or nowhere."""
    record = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(record):
        return None
    with open(record) as file:
        named = file.read().strip()
    if not named:
        return f'{record} is empty; looked at the checkpoints instead.'
    if osp.dirname(osp.abspath(named)) != directory:
        return (f'{record} names {named}, outside {directory} (a copied '
                'work dir?); resuming from this folder\'s own checkpoints.')
    if not osp.isfile(named):
        return f'{record} names {named}, which does not exist.'
    return None


def _refuse_earlier_files(directory: str, earlier: List[str]) -> None:
    if earlier:
        names = ', '.join(osp.basename(path) for path in earlier[:5])
        raise RunSetupError(
            f'{directory} already holds checkpoints of an earlier run '
            f'({names}{", ..." if len(earlier) > 5 else ""}) that this run '
            'could overwrite. Continue that run with --resume, or start a '
            'new one with another --work-dir.')


def _read_steps(saved: List[Tuple[int, str]], step_key: str) -> dict:
    """For each checkpoint path: its stored step (int), or the error that
    says it loads but cannot be resumed (:class:`NotResumable`) or does
    not load at all."""
    readings = {}
    for _, path in saved:
        try:
            readings[path] = read_resumable(path, step_key)
        except (ValueError, OSError) as error:  # NotResumable included
            readings[path] = error
    return readings


def plan_checkpoints(cfg, resume) -> CheckpointPlan:
    """Decides what the run continues from and checks it overwrites
    nothing.

    Args:
        cfg: the run's config (``work_dir`` settled, see ``load_config``).
        resume: None/False for a fresh run, 'auto' for the checkpoint that
            holds the latest step (as stored in the files) and loads, or a
            checkpoint path.

    Raises:
        RunSetupError: a fresh run would write over earlier checkpoints,
            the given checkpoint cannot be resumed, or resuming it would
            write over later checkpoints.
    """
    layout = checkpoint_layout(cfg)
    work_dir = osp.abspath(cfg.work_dir)
    plan = CheckpointPlan(
        stale_temporaries=stale_temporaries(layout.directory))
    saved = layout.checkpoints()
    if not resume:
        record = osp.join(work_dir, 'last_checkpoint')
        _refuse_earlier_files(
            layout.directory, [path for _, path in saved] +
            layout.best_checkpoints() + ([record] if osp.isfile(record) else
                                         []))
        return plan

    readings = _read_steps(saved, layout.step_key)
    step = None
    if resume == 'auto':
        note = _last_checkpoint_note(work_dir, layout.directory)
        if note:
            plan.notes.append(note)
        resumable = sorted(
            ((stored, named, path) for named, path in saved
             for stored in [readings[path]] if isinstance(stored, int)),
            reverse=True)
        if resumable:
            step, _, plan.resume_from = resumable[0]
    else:
        plan.resume_from = osp.abspath(resume)
        try:
            step = read_resumable(plan.resume_from, layout.step_key)
        except (ValueError, OSError) as error:
            raise RunSetupError(
                f'--resume {resume}: cannot resume from it: {_reason(error)}'
            ) from None

    # The run will save the steps after the resumed one under their names:
    # files already named so are set aside if they do not load, and are in
    # the way if they do.
    skipped, later = [], []
    for named, path in saved:
        if step is not None and named <= step:
            continue
        reading = readings[path]
        if isinstance(reading, NotResumable):
            skipped.append(f'{osp.basename(path)} ({_reason(reading)})')
            later.append(path)
        elif isinstance(reading, Exception):
            skipped.append(f'{osp.basename(path)} ({_reason(reading)})')
            plan.set_aside.append(path)
        else:  # also the resumed file itself, named after a later step
            later.append(path)
    if skipped:
        plan.notes.append('skipped checkpoints that cannot be resumed: ' +
                          '; '.join(skipped))
    if later and plan.resume_from is None:
        _refuse_earlier_files(layout.directory, later)
    if later:
        raise RunSetupError(
            f'resuming {plan.resume_from} ({layout.step_key} {step}) would '
            'overwrite the later checkpoints '
            f'{", ".join(osp.basename(path) for path in later)} in '
            f'{layout.directory}. Resume the newest one (--resume alone), or '
            'copy this checkpoint into a new --work-dir and resume it there.')

    load_from = cfg.get('load_from')
    if plan.resume_from is None:
        # A fresh run after all: best_* files of the earlier one would be
        # in its way (last_checkpoint is only a pointer and is rewritten).
        _refuse_earlier_files(layout.directory, layout.best_checkpoints())
        plan.notes.append(
            f'--resume: nothing to resume in {layout.directory}; starting a '
            'new run' + (f' from the weights of load_from={load_from}.'
                         if load_from else ' from the initial weights.'))
        return plan
    plan.notes.append(f'resuming from {plan.resume_from} '
                      f'({layout.step_key} {step}).')
    if load_from and osp.abspath(load_from) != plan.resume_from:
        plan.notes.append(f'the config\'s load_from={load_from} is not used: '
                          'the resumed checkpoint holds all the weights.')
    return plan


def _launched_as_main_process() -> bool:
    """Rank 0 as the launchers set it (torch.distributed.run: RANK, srun:
    SLURM_PROCID), before any process group exists."""
    rank = os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0'))
    return int(rank) == 0


def apply_checkpoint_plan(cfg, plan: CheckpointPlan) -> None:
    """Puts the plan into the config and, in the main process only, moves
    unreadable checkpoints aside, removes stale temporaries and prints the
    notes."""
    if plan.resume_from is not None:
        cfg.resume, cfg.load_from = True, plan.resume_from
    else:
        cfg.resume = False
    if not _launched_as_main_process():
        return
    for path in plan.set_aside:
        target = path + UNREADABLE_SUFFIX
        if osp.lexists(target):
            raise RunSetupError(
                f'{path} does not load and {target} exists already; move '
                'one of them away and run again.')
        os.rename(path, target)
        plan.notes.append(f'moved {path} (it does not load) to {target}; '
                          'the run will save that step again.')
    for path in plan.stale_temporaries:
        os.unlink(path)
        plan.notes.append(f'removed {path}: an unfinished write of a '
                          'killed run.')
    for note in plan.notes:
        print(f'mmvim: {note}', flush=True)


class EarlierBestCheckpointsHook(Hook):
    """Keeps the best checkpoints saved before this process started.

    mmengine's CheckpointHook deletes the previous best checkpoint when it
    saves a new one, and finds it through the absolute path in the resumed
    message hub: in a copied work dir, the original run's file. A resumed
    run (copied or not) never deletes a file it did not write, so the
    previous best stays beside the new one; bests this process saves still
    replace each other. Runs after the CheckpointHook's ``before_train``,
    which reads the path.
    """
    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook):
                continue
            earlier = []
            if getattr(hook, 'best_ckpt_path', None):
                earlier.append(hook.best_ckpt_path)
                hook.best_ckpt_path = None
            paths = getattr(hook, 'best_ckpt_path_dict', None) or {}
            for key, path in paths.items():
                if path:
                    earlier.append(path)
                    paths[key] = None
            for path in earlier:
                runner.logger.info(
                    f'The best checkpoint {path} was saved before this run '
                    'resumed: it is kept, and a new best is saved beside it.')
