"""A test hook: after training, every process records a digest of its model
weights, so a test can check that distributed ranks ended up identical."""
import hashlib
import json
import os.path as osp

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def weights_digest(named_tensors) -> str:
    """sha256 over the names and bytes of the given tensors, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(named_tensors):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@HOOKS.register_module()
class RankDigestHook(Hook):
    """Writes work_dir/weights_rank<R>.json: the parameters' digest and
    names (buffers such as BatchNorm statistics are per-process)."""

    def after_train(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        params = list(model.named_parameters())
        record = dict(
            digest=weights_digest(params),
            names=[name for name, _ in params],
            iter=runner.iter)
        path = osp.join(runner.work_dir, f'weights_rank{runner.rank}.json')
        with open(path, 'w') as file:
            json.dump(record, file)
