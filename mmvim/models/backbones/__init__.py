from .vision_mamba import VisionMamba

__all__ = ['VisionMamba']
