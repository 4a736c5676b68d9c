"""LAMP: few-shot motion-pattern video generation (model package)."""
from .unet import LampUNet, LampUNetOutput

__all__ = ["LampUNet", "LampUNetOutput"]
