"""Which mmvim ops backend a run's model uses, checked before the Runner is
built and stated in the run's log: a broken or missing accelerator makes
training several times slower without any other sign."""
import torch

import mmvim.ops
from .run_guards import RunSetupError


def _why_not(status, device_type: str) -> str:
    if not status.available:
        return f'{status.name} unavailable: {status.reason}'
    if device_type not in (status.device_types or (device_type, )):
        return f'{status.name} does not run on {device_type} tensors'
    return (f'{status.name} available but another backend is forced '
            '(MMVIM_OPS_BACKEND or mmvim.ops.set_backend)')


def ops_backend_line(device) -> str:
    """One line for the run's log: the backend that runs for tensors on
    ``device`` and, for each backend ``auto`` would try before it, why it
    does not run.

    Raises:
        RunSetupError: the requested backend is unknown, or forced and
            unable to run on ``device`` (the ops' own message says how to
            fix it).
    """
    device_type = torch.device(device).type
    try:
        chosen = mmvim.ops.get_backend(device_type)
    except (ValueError, RuntimeError) as error:
        raise RunSetupError(f'mmvim ops backend: {error}') from None
    order = mmvim.ops.auto_order(device_type)
    faster = order[:order.index(chosen)] if chosen in order else order
    statuses = {status.name: status for status in mmvim.ops.list_backends()}
    reasons = [_why_not(statuses[name], device_type) for name in faster
               if name in statuses]
    return (f'mmvim ops backend for {device_type} tensors: {chosen}; ' +
            ('faster ones: ' + '; '.join(reasons)
             if reasons else 'none faster here') +
            f' (auto order: {", ".join(order)})')
