"""API-format graphs for each model family, and the bring-your-own-workflow adapter.

Every builder makes the same five graphs from the same loader nodes, so ComfyUI's cache keeps the
models loaded across them (identical loader inputs are never re-executed):

* ``txt2img`` / ``img2img``: sampler → VAEDecode → PreviewImage, plus (when asked) a SaveLatent branch
  on the sampler output: the keyframe latent for hybrid/interpolate comes back from the same prompt,
  no second round trip and no second VAE in our process;
* ``encode``: LoadImage → VAEEncode → SaveLatent, one branch per image;
* ``decode``: LoadLatent (a batch ``[N, C, H, W]``) → VAEDecode → PreviewImage: N frames per prompt;
* ``walk_frame``: one frame of a latent walk (stable-diffusion-videos): the text conditioning lerped
  with ``ConditioningAverage`` and, for SD families, our own slerped starting noise from an uploaded
  ``.latent`` batch sampled with the sampler's noise disabled (see :mod:`.walk` for the pre-scaling;
  Flux keeps one sampler seed for the whole walk instead).

Frames go out through ``PreviewImage``: ComfyUI writes them to its temp folder (``type: temp``),
which it wipes at every start, where ``SaveImage`` would fill ``output/`` forever (there is no delete
API). We only download them, or feed one back to LoadImage as ``"name [temp]"``.
``comfyui.keep_outputs: true`` switches back to SaveImage for users who want every frame kept.
Latents have no temp variant in core ComfyUI (SaveLatent writes ``output/latents``), so graphs ask
for them only when the caller says it needs them.

Node ids are stable digit strings so graphs of one family differ only in values, which is what
ComfyUI's cache keys on.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dream_window.backends.comfyui.walk import (
    SD15_SCALE_FACTOR,
    SDXL_SCALE_FACTOR,
    NoiseConvention,
    eps_convention,
)
from dream_window.config import ComfyUIConfig, ModelFamily
from dream_window.errors import ConfigError
from dream_window.values.generation import GenerationRequest

Link = list[Any]


@dataclass(frozen=True, slots=True)
class BuiltGraph:
    graph: dict[str, Any]
    image_node: str | None = None  # PreviewImage (or SaveImage): the frame(s)
    latent_nodes: tuple[str, ...] = ()  # SaveLatent nodes, in batch order
    load_image_node: str | None = None


class WorkflowBuilder(Protocol):
    family: str
    latent_channels: int

    def build_txt2img(
        self, request: GenerationRequest, *, prefix: str, want_latent: bool = False
    ) -> BuiltGraph: ...

    def build_img2img(
        self, request: GenerationRequest, image: str, *, prefix: str, want_latent: bool = False
    ) -> BuiltGraph: ...

    def build_encode(self, images: list[str], *, prefix: str) -> BuiltGraph: ...

    def build_decode(self, latent: str, *, prefix: str) -> BuiltGraph: ...

    @property
    def walk_noise(self) -> NoiseConvention: ...

    def build_walk_frame(
        self,
        start: GenerationRequest,
        end: GenerationRequest,
        t: float,
        *,
        prefix: str,
        noise: str | None = None,
        index: int = 0,
        want_latent: bool = False,
    ) -> BuiltGraph: ...


def _node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def image_output(images: Link, prefix: str, *, keep: bool) -> dict[str, Any]:
    """The node that hands decoded frames back: PreviewImage (temp/, wiped at each server start)
    unless the user asked ComfyUI to keep every frame (SaveImage into output/)."""
    if keep:
        return _node("SaveImage", filename_prefix=prefix, images=images)
    return _node("PreviewImage", images=images)


class _Builder:
    """Shared shape; subclasses supply loaders, the empty latent and the sampler."""

    family = ""
    latent_channels = 4
    empty_latent = "EmptyLatentImage"

    def __init__(self, config: ComfyUIConfig) -> None:
        self.config = config

    # model (MODEL), clip (CLIP), vae (VAE) links plus the loader nodes
    def loaders(self) -> tuple[dict[str, Any], Link, Link, Link]:
        raise NotImplementedError

    def sampler(
        self,
        g: dict[str, Any],
        model: Link,
        pos: Link,
        neg: Link,
        latent: Link,
        request: GenerationRequest,
        denoise: float,
    ) -> Link:
        g["20"] = _node(
            "KSampler",
            seed=request.seed,
            steps=request.steps,
            cfg=request.cfg,
            sampler_name=self.config.sampler,
            scheduler=self.config.scheduler,
            denoise=denoise,
            model=model,
            positive=pos,
            negative=neg,
            latent_image=latent,
        )
        return ["20", 0]

    def _generate(
        self,
        request: GenerationRequest,
        latent_nodes: Callable[[Link], dict[str, Any]],
        latent: Link,
        denoise: float,
        prefix: str,
        want_latent: bool,
        load_image: str | None,
    ) -> BuiltGraph:
        g, model, clip, vae = self.loaders()
        g.update(latent_nodes(vae))
        g["10"] = _node("CLIPTextEncode", text=request.prompt, clip=clip)
        g["11"] = _node("CLIPTextEncode", text=request.negative_prompt, clip=clip)
        samples = self.sampler(g, model, ["10", 0], ["11", 0], latent, request, denoise)
        g["30"] = _node("VAEDecode", samples=samples, vae=vae)
        g["31"] = image_output(["30", 0], prefix, keep=self.config.keep_outputs)
        latents: tuple[str, ...] = ()
        if want_latent:
            g["32"] = _node("SaveLatent", filename_prefix=prefix, samples=samples)
            latents = ("32",)
        return BuiltGraph(g, "31", latents, load_image)

    def build_txt2img(
        self, request: GenerationRequest, *, prefix: str, want_latent: bool = False
    ) -> BuiltGraph:
        def nodes(vae: Link) -> dict[str, Any]:
            return {"12": _node(self.empty_latent, width=request.width, height=request.height, batch_size=1)}

        return self._generate(request, nodes, ["12", 0], 1.0, prefix, want_latent, None)

    def build_img2img(
        self, request: GenerationRequest, image: str, *, prefix: str, want_latent: bool = False
    ) -> BuiltGraph:
        def nodes(vae: Link) -> dict[str, Any]:
            return {
                "13": _node("LoadImage", image=image),
                "14": _node("VAEEncode", pixels=["13", 0], vae=vae),
            }

        return self._generate(request, nodes, ["14", 0], request.denoise, prefix, want_latent, "13")

    def build_encode(self, images: list[str], *, prefix: str) -> BuiltGraph:
        g, _model, _clip, vae = self.loaders()
        latents = []
        for i, name in enumerate(images):
            base = 100 + 3 * i
            g[str(base)] = _node("LoadImage", image=name)
            g[str(base + 1)] = _node("VAEEncode", pixels=[str(base), 0], vae=vae)
            g[str(base + 2)] = _node("SaveLatent", filename_prefix=prefix, samples=[str(base + 1), 0])
            latents.append(str(base + 2))
        return BuiltGraph(g, None, tuple(latents))

    def build_decode(self, latent: str, *, prefix: str) -> BuiltGraph:
        g, _model, _clip, vae = self.loaders()
        g["40"] = _node("LoadLatent", latent=latent)
        g["41"] = _node("VAEDecode", samples=["40", 0], vae=vae)
        g["42"] = image_output(["41", 0], prefix, keep=self.config.keep_outputs)
        return BuiltGraph(g, "42")

    # --- latent walk ------------------------------------------------------------------------------

    @property
    def walk_noise(self) -> NoiseConvention:
        return eps_convention(self.latent_channels, SD15_SCALE_FACTOR)

    @staticmethod
    def _lerp_text(
        g: dict[str, Any], clip: Link, a: str, b: str, t: float, ids: tuple[str, str, str]
    ) -> Link:
        """Conditioning for ``lerp(cond(a), cond(b), t)``. ConditioningAverage computes
        ``to·s + from·(1 − s)`` (pooled outputs too), so ``to`` = b, ``from`` = a, ``s`` = t. An
        endpoint, or equal texts, needs no average (and stays cache-identical to a plain encode)."""
        ia, ib, iavg = ids
        if t >= 1.0 or a == b:
            g[ib] = _node("CLIPTextEncode", text=b, clip=clip)
            return [ib, 0]
        g[ia] = _node("CLIPTextEncode", text=a, clip=clip)
        if t <= 0.0:
            return [ia, 0]
        g[ib] = _node("CLIPTextEncode", text=b, clip=clip)
        g[iavg] = _node(
            "ConditioningAverage",
            conditioning_to=[ib, 0],
            conditioning_from=[ia, 0],
            conditioning_to_strength=float(t),
        )
        return [iavg, 0]

    def walk_sigmas(self, g: dict[str, Any], model: Link, request: GenerationRequest) -> Link:
        g["21"] = _node(
            "BasicScheduler", model=model, scheduler=self.config.scheduler, steps=request.steps, denoise=1.0
        )
        g["22"] = _node("KSamplerSelect", sampler_name=self.config.sampler)
        return ["21", 0]

    def build_walk_frame(
        self,
        start: GenerationRequest,
        end: GenerationRequest,
        t: float,
        *,
        prefix: str,
        noise: str | None = None,
        index: int = 0,
        want_latent: bool = False,
    ) -> BuiltGraph:
        """Frame ``t`` of the walk from ``start`` to ``end``: entry ``index`` of the uploaded noise
        batch ``noise`` is the sampler's starting latent, as is, with the sampler's noise disabled."""
        if noise is None:
            raise ValueError(f"{self.family} walk frames need the uploaded noise batch")
        g, model, clip, vae = self.loaders()
        pos = self._lerp_text(g, clip, start.prompt, end.prompt, t, ("10", "15", "16"))
        neg = self._lerp_text(g, clip, start.negative_prompt, end.negative_prompt, t, ("11", "17", "18"))
        g["40"] = _node("LoadLatent", latent=noise)
        g["41"] = _node("LatentFromBatch", samples=["40", 0], batch_index=index, length=1)
        sigmas = self.walk_sigmas(g, model, end)
        g["23"] = _node("DisableNoise")
        g["24"] = _node("CFGGuider", model=model, positive=pos, negative=neg, cfg=end.cfg)
        g["20"] = _node(
            "SamplerCustomAdvanced",
            noise=["23", 0],
            guider=["24", 0],
            sampler=["22", 0],
            sigmas=sigmas,
            latent_image=["41", 0],
        )
        return self._outputs(g, ["20", 0], vae, prefix, want_latent)

    def _outputs(
        self, g: dict[str, Any], samples: Link, vae: Link, prefix: str, want_latent: bool
    ) -> BuiltGraph:
        g["30"] = _node("VAEDecode", samples=samples, vae=vae)
        g["31"] = image_output(["30", 0], prefix, keep=self.config.keep_outputs)
        latents: tuple[str, ...] = ()
        if want_latent:
            g["32"] = _node("SaveLatent", filename_prefix=prefix, samples=samples)
            latents = ("32",)
        return BuiltGraph(g, "31", latents)


class FluxWorkflowBuilder(_Builder):
    """Flux schnell: 4 steps, cfg 1.0, euler/simple, 16-channel latents (EmptySD3LatentImage);
    an all-in-one checkpoint or split unet + clip_l/t5 + ae files."""

    family = "flux-schnell"
    latent_channels = 16
    empty_latent = "EmptySD3LatentImage"

    def loaders(self) -> tuple[dict[str, Any], Link, Link, Link]:
        f = self.config.flux
        if f.layout == "checkpoint":
            return (
                {"1": _node("CheckpointLoaderSimple", ckpt_name=f.checkpoint)},
                ["1", 0],
                ["1", 1],
                ["1", 2],
            )
        g = {
            "1": _node("UNETLoader", unet_name=f.unet, weight_dtype=f.unet_weight_dtype),
            "2": _node("DualCLIPLoader", clip_name1=f.clip_l, clip_name2=f.t5, type="flux"),
            "3": _node("VAELoader", vae_name=f.vae),
        }
        return g, ["1", 0], ["2", 0], ["3", 0]

    @property
    def walk_noise(self) -> NoiseConvention:
        return NoiseConvention(self.latent_channels, None)  # flow model: see walk.py

    def build_walk_frame(
        self,
        start: GenerationRequest,
        end: GenerationRequest,
        t: float,
        *,
        prefix: str,
        noise: str | None = None,
        index: int = 0,
        want_latent: bool = False,
    ) -> BuiltGraph:
        """Flux: the sampler's own noise from ONE seed for the whole walk (``start.seed``), the
        conditioning lerped. ``noise``/``index`` are not used (a flow sampler at σ=1 ignores any
        starting latent when its noise is disabled)."""
        g, model, clip, vae = self.loaders()
        pos = self._lerp_text(g, clip, start.prompt, end.prompt, t, ("10", "15", "16"))
        neg = self._lerp_text(g, clip, start.negative_prompt, end.negative_prompt, t, ("11", "17", "18"))
        g["12"] = _node(self.empty_latent, width=end.width, height=end.height, batch_size=1)
        samples = self.sampler(g, model, pos, neg, ["12", 0], dataclasses.replace(end, seed=start.seed), 1.0)
        return self._outputs(g, samples, vae, prefix, want_latent)


class SD15WorkflowBuilder(_Builder):
    family = "sd15"
    latent_channels = 4

    def loaders(self) -> tuple[dict[str, Any], Link, Link, Link]:
        return (
            {"1": _node("CheckpointLoaderSimple", ckpt_name=self.config.sd15_checkpoint)},
            ["1", 0],
            ["1", 1],
            ["1", 2],
        )


class SDXLTurboWorkflowBuilder(_Builder):
    """SDXL-Turbo: SDTurboScheduler + SamplerCustom (KSampler's schedulers do not fit turbo)."""

    family = "sdxl-turbo"
    latent_channels = 4

    def loaders(self) -> tuple[dict[str, Any], Link, Link, Link]:
        return (
            {"1": _node("CheckpointLoaderSimple", ckpt_name=self.config.sdxl_turbo_checkpoint)},
            ["1", 0],
            ["1", 1],
            ["1", 2],
        )

    def sampler(
        self,
        g: dict[str, Any],
        model: Link,
        pos: Link,
        neg: Link,
        latent: Link,
        request: GenerationRequest,
        denoise: float,
    ) -> Link:
        g["21"] = _node("SDTurboScheduler", model=model, steps=min(request.steps, 10), denoise=denoise)
        g["22"] = _node("KSamplerSelect", sampler_name="euler_ancestral")
        g["20"] = _node(
            "SamplerCustom",
            model=model,
            add_noise=True,
            noise_seed=request.seed,
            cfg=request.cfg,
            positive=pos,
            negative=neg,
            sampler=["22", 0],
            sigmas=["21", 0],
            latent_image=latent,
        )
        return ["20", 0]

    @property
    def walk_noise(self) -> NoiseConvention:
        return eps_convention(self.latent_channels, SDXL_SCALE_FACTOR)

    def walk_sigmas(self, g: dict[str, Any], model: Link, request: GenerationRequest) -> Link:
        # SDTurboScheduler at denoise 1 starts at timestep 999, i.e. σ_max: max_denoise holds.
        g["21"] = _node("SDTurboScheduler", model=model, steps=min(request.steps, 10), denoise=1.0)
        g["22"] = _node("KSamplerSelect", sampler_name="euler_ancestral")
        return ["21", 0]


# --- bring your own workflow ---------------------------------------------------------------------

MAPPING_KEYS = (
    "prompt",
    "negative_prompt",
    "seed",
    "denoise",
    "width",
    "height",
    "steps",
    "cfg",
    "input_image",
    "output",
)
_VAE_SOURCES = {"VAELoader": 0, "CheckpointLoaderSimple": 2}


class CustomWorkflow:
    """A user's API-format workflow with a mapping of where our values go, e.g.
    ``{"prompt": "6.text", "seed": "3.seed", "denoise": "3.denoise", "input_image": "10.image"}``.

    ``output`` names the SaveImage node (default: the only SaveImage). Unless ``keep_outputs``, that
    node becomes a PreviewImage (temp/, wiped at each server start): we only download its frames.
    Encode/decode graphs use the workflow's own VAE source (VAELoader or the checkpoint's VAE output)."""

    family = "custom"

    def __init__(self, path: Path, mapping: dict[str, str], *, keep_outputs: bool = False) -> None:
        self.keep_outputs = keep_outputs
        try:
            graph = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"comfyui.workflow: cannot read {path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"comfyui.workflow: {path} is not JSON: {exc.msg} (line {exc.lineno})"
            ) from None
        if not isinstance(graph, dict) or not all(
            isinstance(n, dict) and "class_type" in n for n in graph.values()
        ):
            raise ConfigError(
                f"comfyui.workflow: {path} is not an API-format workflow "
                "(export it with 'Save (API Format)' in ComfyUI)"
            )
        self.graph: dict[str, Any] = graph
        self.targets: dict[str, tuple[str, str]] = {}
        problems = []
        for key, target in mapping.items():
            if key not in MAPPING_KEYS:
                problems.append(
                    f"comfyui.workflow_mapping: unknown key {key!r}; allowed: {', '.join(MAPPING_KEYS)}"
                )
                continue
            if key == "output":
                if target not in graph:
                    problems.append(
                        f"comfyui.workflow_mapping.output: node {target!r} is not in the workflow"
                    )
                continue
            nid, _, inp = target.partition(".")
            if nid not in graph or not inp:
                problems.append(
                    f"comfyui.workflow_mapping.{key}: {target!r} must be 'node_id.input' of a node "
                    f"in the workflow (nodes: {', '.join(graph)})"
                )
            elif inp not in graph[nid].get("inputs", {}):
                problems.append(
                    f"comfyui.workflow_mapping.{key}: node {nid} ({graph[nid]['class_type']}) has no "
                    f"input {inp!r}; it has: {', '.join(graph[nid].get('inputs', {}))}"
                )
            else:
                self.targets[key] = (nid, inp)
        if "prompt" not in self.targets and not problems:
            problems.append("comfyui.workflow_mapping needs at least 'prompt' (e.g. prompt: \"6.text\")")
        saves = [nid for nid, n in graph.items() if n["class_type"] == "SaveImage"]
        self.output = mapping.get("output") or (saves[0] if len(saves) == 1 else None)
        if self.output is None and not problems:
            problems.append(
                "comfyui.workflow_mapping.output: name the SaveImage node; the workflow has "
                f"{len(saves)} SaveImage nodes"
            )
        self.vae: Link | None = next(
            (
                [nid, _VAE_SOURCES[n["class_type"]]]
                for nid, n in graph.items()
                if n["class_type"] in _VAE_SOURCES
            ),
            None,
        )
        if problems:
            raise ConfigError(problems[0], problems=problems)
        big = any(n["class_type"] in ("EmptySD3LatentImage", "UNETLoader") for n in graph.values())
        self.latent_channels = 16 if big else 4

    def _fill(
        self, request: GenerationRequest, prefix: str, image: str | None, denoise: float
    ) -> dict[str, Any]:
        g = copy.deepcopy(self.graph)
        values = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "denoise": denoise,
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "cfg": request.cfg,
            "input_image": image,
        }
        for key, (nid, inp) in self.targets.items():
            if values.get(key) is not None:
                g[nid]["inputs"][inp] = values[key]
        if self.output is not None and g[self.output]["class_type"] == "SaveImage":
            g[self.output] = image_output(g[self.output]["inputs"]["images"], prefix, keep=self.keep_outputs)
        return g

    @property
    def needs_image(self) -> bool:
        return "input_image" in self.targets

    def build_txt2img(
        self, request: GenerationRequest, *, prefix: str, want_latent: bool = False, image: str | None = None
    ) -> BuiltGraph:
        return BuiltGraph(self._fill(request, prefix, image, 1.0), self.output)

    def build_img2img(
        self, request: GenerationRequest, image: str, *, prefix: str, want_latent: bool = False
    ) -> BuiltGraph:
        return BuiltGraph(
            self._fill(request, prefix, image, request.denoise),
            self.output,
            load_image_node=self.targets.get("input_image", (None,))[0],
        )

    def _vae_graph(self) -> tuple[dict[str, Any], Link]:
        if self.vae is None:
            raise ConfigError(
                "comfyui.workflow: encode/decode need a VAELoader or CheckpointLoaderSimple in the "
                "workflow; hybrid and interpolate modes cannot use this workflow"
            )
        nid = self.vae[0]
        return {nid: copy.deepcopy(self.graph[nid])}, self.vae

    def build_encode(self, images: list[str], *, prefix: str) -> BuiltGraph:
        g, vae = self._vae_graph()
        latents = []
        for i, name in enumerate(images):
            base = 9000 + 3 * i
            g[str(base)] = _node("LoadImage", image=name)
            g[str(base + 1)] = _node("VAEEncode", pixels=[str(base), 0], vae=vae)
            g[str(base + 2)] = _node("SaveLatent", filename_prefix=prefix, samples=[str(base + 1), 0])
            latents.append(str(base + 2))
        return BuiltGraph(g, None, tuple(latents))

    def build_decode(self, latent: str, *, prefix: str) -> BuiltGraph:
        g, vae = self._vae_graph()
        g["9100"] = _node("LoadLatent", latent=latent)
        g["9101"] = _node("VAEDecode", samples=["9100", 0], vae=vae)
        g["9102"] = image_output(["9101", 0], prefix, keep=self.keep_outputs)
        return BuiltGraph(g, "9102")


def create_builder(
    model: ModelFamily, config: ComfyUIConfig, *, base_dir: Path | None = None
) -> WorkflowBuilder | CustomWorkflow:
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
