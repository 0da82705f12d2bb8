"""Latent-space in-betweens for the modes: the LatentEncoder strategies (the backend's own VAE, a
local diffusers VAE), in-betweens slerped and decoded in batches, the pixel crossfade fallback.

Sits between the modes and the backends: it wraps a backend's encode/decode, and the modes call
it. slerp itself is a value-level function (:mod:`dream_window.values.slerp`); the latent walk is a
backend capability (:class:`dream_window.backends.base.SupportsLatentWalk`). Importing this
package never imports torch; the local VAE loads it on first use.
"""
