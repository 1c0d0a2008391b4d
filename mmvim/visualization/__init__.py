"""Pictures of a run: prediction panels and training curves.

Shared by the quickstarts and ``tools/analysis_tools/plot_curves.py``. Not
imported by ``import mmvim``: drawing needs matplotlib, which the backbone
and the ops do not. Inputs are plain numpy arrays and mmengine's scalar
logs, so nothing here needs mmseg or mmdet.
"""
from .curves import find_scalar_logs, load_scalars, plot_curves
from .panels import Instances, detection_panel, segmentation_panel

__all__ = [
    'Instances', 'detection_panel', 'find_scalar_logs', 'load_scalars',
    'plot_curves', 'segmentation_panel'
]
