"""What the analysis tools (tools/analysis_tools) measure with. Not imported
by ``import mmvim``; everything needs only torch and mmengine except
config_models' mmseg / mmdet batches and speed_memory_plot's matplotlib,
each imported where used.

- complexity: parameters and FLOPs, each scan operator call counted;
- config_models: whole mmseg / mmdet models and synthetic batches for them;
- deit: the DeiT baseline with fused attention;
- workloads: model names (``vim-tiny@torch``, ...) and their step functions;
- measurement: one timed measurement with its peak memory, in this process;
- isolated_run: each measurement in a fresh process, under a time and RSS
  watchdog;
- benchmark_results: results files, ratios to a baseline, tables;
- speed_memory_plot: the Vim paper's Figure 1 from results;
- scan_speed: the selective scan alone against the machine's limits;
- memory_estimate: a config's peak GPU memory per step under fake tensors,
  with memory_tracking (live storages counted), memory_autocast (CUDA's
  autocast on CPU tensors), memory_stand_ins (the detectors' values),
  memory_report (breakdown, cards) and memory_table (the docs' tables).
"""
