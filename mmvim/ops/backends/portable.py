"""The ``torch`` backend: mmvim's portable chunked scan and the portable
conv, in plain PyTorch on any device, as the operators
``mmvim::selective_scan_torch`` and ``mmvim::causal_conv1d_silu_torch``."""
from ..library import (conv_operator, define_conv_operators,
                       define_scan_operators, scan_operator)
from ..portable_conv import conv_backward, conv_forward
from ..portable_scan import PORTABLE_STATES, scan_backward, scan_forward

define_scan_operators('torch', scan_forward, scan_backward, PORTABLE_STATES)
define_conv_operators('torch', conv_forward, conv_backward)
selective_scan = scan_operator('torch')
causal_conv1d_silu = conv_operator('torch')
