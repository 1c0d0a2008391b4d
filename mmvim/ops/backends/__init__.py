"""One module per ops backend, each imported only when first asked for (see
:mod:`mmvim.ops.registry`). A backend module defines ``selective_scan``,
``bidirectional_selective_scan`` and ``causal_conv1d_silu`` with the
signatures of :mod:`mmvim.ops.mamba_ops` (arguments already checked), and
may define ``check()``, raising with the reason it cannot run here."""
