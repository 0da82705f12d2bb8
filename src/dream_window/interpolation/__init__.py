"""Latent-space interpolation: spherical_lerp and the LatentEncoder strategies."""

from dream_window.interpolation.spherical_lerp import spherical_lerp

__all__ = ["spherical_lerp"]
