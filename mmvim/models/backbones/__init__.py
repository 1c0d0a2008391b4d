from .vision_mamba import VisionMamba, checkpoint_filter_fn

__all__ = ['VisionMamba', 'checkpoint_filter_fn']
