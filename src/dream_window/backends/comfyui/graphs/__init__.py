"""API-format ComfyUI graphs: one builder per model family, the bring-your-own-workflow adapter,
and the latent walk's starting-noise maths the builders' walk frames depend on.

``create_builder(model, config)`` picks the builder the backend uses. Module map:

* ``base``       — BuiltGraph, the WorkflowBuilder contract, node helpers, and the five graphs
  (txt2img, img2img, encode, decode, walk frame) every built-in family shares
* ``flux``       — Flux schnell (checkpoint or split files; walks under one sampler seed)
* ``sd15``       — Stable Diffusion 1.5
* ``sdxl_turbo`` — SDXL-Turbo (its own scheduler and sampler)
* ``custom``     — CustomWorkflow: the user's own API-format JSON plus ``workflow_mapping``
* ``noise``      — the walk's starting noise: per-seed Gaussian, slerped, pre-scaled per family
"""

from __future__ import annotations

from pathlib import Path

from dream_window.backends.comfyui.graphs.base import BuiltGraph, WorkflowBuilder
from dream_window.backends.comfyui.graphs.custom import CustomWorkflow
from dream_window.backends.comfyui.graphs.flux import FluxWorkflowBuilder
from dream_window.backends.comfyui.graphs.noise import (
    SD15_SCALE_FACTOR,
    SDXL_SCALE_FACTOR,
    NoiseConvention,
    discrete_sigma_max,
    eps_convention,
)
from dream_window.backends.comfyui.graphs.sd15 import SD15WorkflowBuilder
from dream_window.backends.comfyui.graphs.sdxl_turbo import SDXLTurboWorkflowBuilder
from dream_window.config import ComfyUIConfig, ModelFamily

__all__ = [
    "SD15_SCALE_FACTOR",
    "SDXL_SCALE_FACTOR",
    "BuiltGraph",
    "CustomWorkflow",
    "FluxWorkflowBuilder",
    "NoiseConvention",
    "SD15WorkflowBuilder",
    "SDXLTurboWorkflowBuilder",
    "WorkflowBuilder",
    "create_builder",
    "discrete_sigma_max",
    "eps_convention",
]


def create_builder(
    model: ModelFamily, config: ComfyUIConfig, *, base_dir: Path | None = None
) -> WorkflowBuilder | CustomWorkflow:
    """The user's own workflow when ``comfyui.workflow`` is set (a relative path is taken from
    ``base_dir``, the config file's folder), else the built-in builder for ``model``."""
    if config.workflow is not None:
        path = (
            config.workflow
            if config.workflow.is_absolute() or base_dir is None
            else base_dir / config.workflow
        )
        return CustomWorkflow(path, dict(config.workflow_mapping), keep_outputs=config.keep_outputs)
    return {
        ModelFamily.FLUX_SCHNELL: FluxWorkflowBuilder,
        ModelFamily.SD15: SD15WorkflowBuilder,
        ModelFamily.SDXL_TURBO: SDXLTurboWorkflowBuilder,
    }[model](config)
