"""What every graph builder shares: the result type, the builder contract, node helpers, and the
base class the built-in families (Flux, SD 1.5, SDXL-Turbo) fill in with their loaders and sampler.

Every family makes the same five graphs from the same loader nodes, so ComfyUI's cache keeps the
models loaded across them (identical loader inputs are never re-executed):

* ``txt2img`` / ``img2img``: sampler → VAEDecode → PreviewImage, plus (when asked) a SaveLatent branch
  on the sampler output: the keyframe latent for hybrid/interpolate comes back from the same prompt,
  no second round trip and no second VAE in our process;
* ``encode``: LoadImage → VAEEncode → SaveLatent, one branch per image;
* ``decode``: LoadLatent (a batch ``[N, C, H, W]``) → VAEDecode → PreviewImage: N frames per prompt;
* ``walk_frame``: one frame of a latent walk (stable-diffusion-videos): the text conditioning lerped
  with ``ConditioningAverage`` and, for SD families, our own slerped starting noise from an uploaded
  ``.latent`` batch sampled with the sampler's noise disabled (see :mod:`.noise` for the pre-scaling;
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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dream_window.backends.comfyui.graphs.noise import NoiseConvention
from dream_window.config import ComfyUIConfig
from dream_window.values.generation import GenerationRequest

# An input wired to another node's output: ``[node_id, output_index]``.
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


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def image_output(images: Link, prefix: str, *, keep: bool) -> dict[str, Any]:
    """The node that hands decoded frames back: PreviewImage (temp/, wiped at each server start)
    unless the user asked ComfyUI to keep every frame (SaveImage into output/)."""
    if keep:
        return node("SaveImage", filename_prefix=prefix, images=images)
    return node("PreviewImage", images=images)


def encode_graph(
    g: dict[str, Any], images: list[str], vae: Link, *, prefix: str, first_id: int
) -> BuiltGraph:
    """``g`` plus LoadImage → VAEEncode → SaveLatent per image, numbered from ``first_id``: the
    encode graph of every builder (they differ only in where the VAE comes from)."""
    latents = []
    for i, name in enumerate(images):
        base = first_id + 3 * i
        g[str(base)] = node("LoadImage", image=name)
        g[str(base + 1)] = node("VAEEncode", pixels=[str(base), 0], vae=vae)
        g[str(base + 2)] = node("SaveLatent", filename_prefix=prefix, samples=[str(base + 1), 0])
        latents.append(str(base + 2))
    return BuiltGraph(g, None, tuple(latents))


def decode_graph(
    g: dict[str, Any], latent: str, vae: Link, *, prefix: str, first_id: int, keep: bool
) -> BuiltGraph:
    """``g`` plus LoadLatent → VAEDecode → the image output, numbered from ``first_id``."""
    load, decode, out = (str(first_id + k) for k in range(3))
    g[load] = node("LoadLatent", latent=latent)
    g[decode] = node("VAEDecode", samples=[load, 0], vae=vae)
    g[out] = image_output([decode, 0], prefix, keep=keep)
    return BuiltGraph(g, out)


class FamilyBuilder:
    """The five graphs of a built-in family; subclasses supply the loaders, the empty latent, the
    walk noise convention and, where KSampler does not fit, the sampler."""

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
        g["20"] = node(
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
        g["10"] = node("CLIPTextEncode", text=request.prompt, clip=clip)
        g["11"] = node("CLIPTextEncode", text=request.negative_prompt, clip=clip)
        samples = self.sampler(g, model, ["10", 0], ["11", 0], latent, request, denoise)
        return self._outputs(g, samples, vae, prefix, want_latent, load_image)

    def build_txt2img(
        self, request: GenerationRequest, *, prefix: str, want_latent: bool = False
    ) -> BuiltGraph:
        def nodes(vae: Link) -> dict[str, Any]:
            return {"12": node(self.empty_latent, width=request.width, height=request.height, batch_size=1)}

        return self._generate(request, nodes, ["12", 0], 1.0, prefix, want_latent, None)

    def build_img2img(
        self, request: GenerationRequest, image: str, *, prefix: str, want_latent: bool = False
    ) -> BuiltGraph:
        def nodes(vae: Link) -> dict[str, Any]:
            return {
                "13": node("LoadImage", image=image),
                "14": node("VAEEncode", pixels=["13", 0], vae=vae),
            }

        return self._generate(request, nodes, ["14", 0], request.denoise, prefix, want_latent, "13")

    def build_encode(self, images: list[str], *, prefix: str) -> BuiltGraph:
        g, _model, _clip, vae = self.loaders()
        return encode_graph(g, images, vae, prefix=prefix, first_id=100)

    def build_decode(self, latent: str, *, prefix: str) -> BuiltGraph:
        g, _model, _clip, vae = self.loaders()
        return decode_graph(g, latent, vae, prefix=prefix, first_id=40, keep=self.config.keep_outputs)

    # --- latent walk ------------------------------------------------------------------------------

    @property
    def walk_noise(self) -> NoiseConvention:
        # Each family's own: its VAE scale factor (SD) or none at all (flow models); see noise.py.
        raise NotImplementedError

    @staticmethod
    def _lerp_text(
        g: dict[str, Any], clip: Link, a: str, b: str, t: float, ids: tuple[str, str, str]
    ) -> Link:
        """Conditioning for ``lerp(cond(a), cond(b), t)``. ConditioningAverage computes
        ``to·s + from·(1 − s)`` (pooled outputs too), so ``to`` = b, ``from`` = a, ``s`` = t. An
        endpoint, or equal texts, needs no average (and stays cache-identical to a plain encode)."""
        ia, ib, iavg = ids
        if t >= 1.0 or a == b:
            g[ib] = node("CLIPTextEncode", text=b, clip=clip)
            return [ib, 0]
        g[ia] = node("CLIPTextEncode", text=a, clip=clip)
        if t <= 0.0:
            return [ia, 0]
        g[ib] = node("CLIPTextEncode", text=b, clip=clip)
        g[iavg] = node(
            "ConditioningAverage",
            conditioning_to=[ib, 0],
            conditioning_from=[ia, 0],
            conditioning_to_strength=float(t),
        )
        return [iavg, 0]

    def walk_sigmas(self, g: dict[str, Any], model: Link, request: GenerationRequest) -> Link:
        g["21"] = node(
            "BasicScheduler", model=model, scheduler=self.config.scheduler, steps=request.steps, denoise=1.0
        )
        g["22"] = node("KSamplerSelect", sampler_name=self.config.sampler)
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
        g["40"] = node("LoadLatent", latent=noise)
        g["41"] = node("LatentFromBatch", samples=["40", 0], batch_index=index, length=1)
        sigmas = self.walk_sigmas(g, model, end)
        g["23"] = node("DisableNoise")
        g["24"] = node("CFGGuider", model=model, positive=pos, negative=neg, cfg=end.cfg)
        g["20"] = node(
            "SamplerCustomAdvanced",
            noise=["23", 0],
            guider=["24", 0],
            sampler=["22", 0],
            sigmas=sigmas,
            latent_image=["41", 0],
        )
        return self._outputs(g, ["20", 0], vae, prefix, want_latent)

    def _outputs(
        self,
        g: dict[str, Any],
        samples: Link,
        vae: Link,
        prefix: str,
        want_latent: bool,
        load_image: str | None = None,
    ) -> BuiltGraph:
        """The sampler's output decoded to the frame, plus its latent when the caller needs it."""
        g["30"] = node("VAEDecode", samples=samples, vae=vae)
        g["31"] = image_output(["30", 0], prefix, keep=self.config.keep_outputs)
        latents: tuple[str, ...] = ()
        if want_latent:
            g["32"] = node("SaveLatent", filename_prefix=prefix, samples=samples)
            latents = ("32",)
        return BuiltGraph(g, "31", latents, load_image)
