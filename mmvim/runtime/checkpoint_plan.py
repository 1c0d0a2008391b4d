"""What a training run continues from, decided before the Runner exists.

mmengine's ``resume=True`` trusts ``work_dir/last_checkpoint``: an absolute
path (a copied work dir resumes from the original folder), possibly naming a
missing, empty or truncated file, and with nothing to resume it starts from
scratch and drops ``load_from`` with one log line. :func:`plan_checkpoints`
instead looks at the checkpoints themselves, where the config's
``CheckpointHook`` saves them (``out_dir``, ``filename_tmpl``):

* ``--resume`` alone takes the newest checkpoint that loads, and says which
  and why it skipped the others;
* no run, fresh or resumed, may later write over a checkpoint already there.

:func:`apply_checkpoint_plan` then sets ``resume``/``load_from`` explicitly,
so mmengine never reads ``last_checkpoint``.
"""
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from glob import glob
from typing import List, Optional, Tuple

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
        """(step, path) of every file named after the template, newest
        first."""
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
    ``epoch_{}.pth`` or ``iter_{}.pth`` by ``by_epoch``."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    by_epoch = hook.get('by_epoch', True)
    template = hook.get('filename_tmpl') or (
        'epoch_{}.pth' if by_epoch else 'iter_{}.pth')
    work_dir = osp.abspath(cfg.work_dir)
    out_dir = hook.get('out_dir')
    if out_dir is None or str(out_dir) == work_dir:
        directory = work_dir
    else:
        directory = osp.join(str(out_dir), osp.basename(work_dir))
    return CheckpointLayout(osp.abspath(directory), template, by_epoch)


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
    checkpoint = load_checkpoint_file(path)
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


def plan_checkpoints(cfg, resume) -> CheckpointPlan:
    """Decides what the run continues from and checks it overwrites
    nothing.

    Args:
        cfg: the run's config (``work_dir`` settled, see ``load_config``).
        resume: None/False for a fresh run, 'auto' for the newest
            checkpoint that loads, or a checkpoint path.

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

    if resume == 'auto':
        note = _last_checkpoint_note(work_dir, layout.directory)
        if note:
            plan.notes.append(note)
        candidates = saved
    else:
        plan.resume_from = osp.abspath(resume)
        try:
            step = read_resumable(plan.resume_from, layout.step_key)
        except (ValueError, OSError) as error:
            raise RunSetupError(
                f'--resume {resume}: cannot resume from it: {_reason(error)}'
            ) from None
        candidates = [(saved_step, path) for saved_step, path in saved
                      if saved_step > step and path != plan.resume_from]

    # Newest first: in 'auto' mode the first resumable one is resumed.
    # Files after the resumed step that do not load are set aside; the
    # ones that load would be overwritten.
    skipped, later = [], []
    for _, path in candidates:
        try:
            candidate_step = read_resumable(path, layout.step_key)
        except NotResumable as error:
            skipped.append(f'{osp.basename(path)} ({_reason(error)})')
            later.append(path)
            continue
        except (ValueError, OSError) as error:
            skipped.append(f'{osp.basename(path)} ({_reason(error)})')
            plan.set_aside.append(path)
            continue
        if plan.resume_from is None:
            plan.resume_from, step = path, candidate_step
            break
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
