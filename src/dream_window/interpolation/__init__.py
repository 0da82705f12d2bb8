"""Latent-space interpolation: spherical_lerp, the LatentEncoder strategies, in-betweens.

Importing this package never imports torch; the local VAE loads it on first use.
"""

from dream_window.backends.base import SupportsLatentWalk
from dream_window.interpolation.checks import doctor_checks
from dream_window.interpolation.crossfade import crossfade
from dream_window.interpolation.latent_encoder import (
    BackendLatentEncoder,
    LatentEncoder,
    create_latent_encoder,
)
from dream_window.values.slerp import spherical_lerp

__all__ = [
    "BackendLatentEncoder",
    "LatentEncoder",
    "SupportsLatentWalk",
    "create_latent_encoder",
    "crossfade",
    "doctor_checks",
    "spherical_lerp",
]
