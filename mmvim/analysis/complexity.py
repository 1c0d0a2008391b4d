"""Parameters and FLOPs of a model, with the selective scan counted.

mmengine's FlopAnalyzer (fvcore's counter over a jit trace) has no formula
for the scan and would count it as zero. Each scan call is one
``torch.library`` operator (``mmvim::selective_scan_<backend>``), so the jit
trace holds it as one node, counted analytically here on whichever backend
runs.

Convention, that of fvcore / mmengine: one multiply-add = 1 FLOP for
matmuls and convolutions (their handles also give norm layers and
interpolation a per-element cost); additions and element-wise activations
are not counted. The selective scan costs
  per token, channel and state: 4 = the decay exp(dt * A) (1), the recurrence
      h = decay * h + (dt * u) * B (2 multiply-adds), the readout C . h (1);
  per token and channel: 3 = dt * u, the skip D * u and the gate y * silu(z),
i.e. b * d * l * (4 N + 3) for a call on (b, d, l) inputs with state size N
(d counts both directions' channels when they share one call). FLOPs do not
depend on the backend that runs in practice.
"""
from typing import Dict, Tuple

import torch

from mmvim.ops import backend_names
from mmvim.ops.library import NAMESPACE, operator_name


def scan_nodes():
    """The jit node kinds of every registered backend's scan operator."""
    return [f'{NAMESPACE}::{operator_name("selective_scan", name)}'
            for name in backend_names()]


def selective_scan_flops(inputs, outputs) -> Dict[str, int]:
    """FlopAnalyzer handle: b * d * l * (4 N + 3).

    The traced node's inputs are its tensors in call order, so u (b, d, l)
    comes first and A (d, N) third.
    """
    from mmengine.analysis.jit_handles import get_shape
    batch, channels, length = get_shape(inputs[0])
    d_state = get_shape(inputs[2])[-1]
    return {'selective_scan': batch * channels * length * (4 * d_state + 3)}


def count_complexity(model: torch.nn.Module, inputs: Tuple,
                     table_depth: int = 0) -> Dict:
    """Parameters, FLOPs (total, scan, per operator) of ``model(*inputs)``;
    with ``table_depth`` > 0 also mmengine's per-module table."""
    from mmengine.analysis import FlopAnalyzer, parameter_count
    from mmengine.analysis.print_helper import complexity_stats_table

    from mmvim.models.layers.bimamba import BiMambaMixer
    with torch.no_grad():
        analyzer = FlopAnalyzer(model.eval(), inputs)
        for node in scan_nodes():
            analyzer.set_op_handle(node, selective_scan_flops)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        by_operator = dict(analyzer.by_operator())
        table = complexity_stats_table(
            analyzer, max_depth=table_depth) if table_depth else ''
    has_mixer = any(isinstance(m, BiMambaMixer) for m in model.modules())
    if has_mixer and not by_operator.get('selective_scan'):
        raise RuntimeError('The model has Mamba mixers but no scan was '
                           'traced: does the mixer still call the scan '
                           'through mmvim.ops?')
    return dict(params=parameter_count(model)[''],
                flops=sum(by_operator.values()),
                scan_flops=by_operator.get('selective_scan', 0),
                by_operator=by_operator, table=table)
