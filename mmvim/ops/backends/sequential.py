"""The ``sequential`` backend: the plain token loop
(``mmvim::selective_scan_sequential``, its adjoint loop for the backward)
and the portable conv. The ground truth of the tests and the benchmark's
baseline."""
from ..library import conv_operator, define_scan_operators, scan_operator
from ..portable_scan import (SEQUENTIAL_STATES, sequential_backward,
                             sequential_forward)
from . import portable  # noqa: F401 - defines the portable conv operators

define_scan_operators('sequential', sequential_forward, sequential_backward,
                      SEQUENTIAL_STATES)
selective_scan = scan_operator('sequential')
causal_conv1d_silu = conv_operator('torch')
