"""What the analysis tools (tools/analysis_tools) measure with: FLOP counting,
synthetic inputs for whole configs. Not imported by ``import mmvim``; some of
it needs mmseg / mmdet, imported where used."""
