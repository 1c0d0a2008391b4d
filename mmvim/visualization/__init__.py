"""Pictures of a run: prediction panels (and the score threshold a
detection panel draws from) and training curves.

Shared by the quickstarts and ``tools/analysis_tools/plot_curves.py``. Not
imported by ``import mmvim``: drawing needs matplotlib, which the backbone
and the ops do not. Inputs are plain numpy arrays and mmengine's scalar
logs, so nothing here needs mmseg or mmdet.
"""
from .curves import find_scalar_logs, load_scalars, plot_curves
from .panels import Instances, detection_panel, segmentation_panel
from .score_threshold import ScoreThreshold, best_f1_threshold

__all__ = [
    'best_f1_threshold', 'Instances', 'detection_panel', 'find_scalar_logs',
    'load_scalars', 'plot_curves', 'ScoreThreshold', 'segmentation_panel'
]
