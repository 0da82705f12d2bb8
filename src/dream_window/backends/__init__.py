"""Generation backends: what turns a prompt (and maybe an image) into pixels and latents."""

from dream_window.backends.base import (
    BackendHealth,
    GeneratedImage,
    GenerationBackend,
    GenerationRequest,
    ProgressCallback,
)

__all__ = ["BackendHealth", "GeneratedImage", "GenerationBackend", "GenerationRequest", "ProgressCallback"]
