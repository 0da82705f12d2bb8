"""Bring your own workflow: a user's API-format JSON graph, filled with our values through a mapping.

The user's graph is whatever they built in ComfyUI, so we check the mapping against it once, up
front (every problem named, as ``ConfigError.problems``), and afterwards only write values into a
copy of it. It makes txt2img/img2img and, through the workflow's own VAE, encode/decode graphs; it
has no walk frame (we cannot know where its noise and conditioning go).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from dream_window.backends.comfyui.graphs.base import (
    BuiltGraph,
    Link,
    decode_graph,
    encode_graph,
    image_output,
)
from dream_window.errors import ConfigError
from dream_window.text_files import read_text_file
from dream_window.values.generation import GenerationRequest

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
# Where a workflow's VAE can come from: loader class → index of its VAE output.
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
        # Any encoding a Windows editor may save it in (UTF-8 with or without BOM, UTF-16), or one
        # line naming what it is; a 16 MiB cap (an API workflow is a few KiB).
        text = read_text_file(Path(path), what="comfyui.workflow", max_bytes=16 * 1024 * 1024)
        try:
            graph = json.loads(text)
        except RecursionError:
            raise ConfigError(f"comfyui.workflow: {path} nests too deeply to be a workflow") from None
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
        # High ids: clear of the workflow's VAE node, the one node kept.
        return encode_graph(g, images, vae, prefix=prefix, first_id=9000)

    def build_decode(self, latent: str, *, prefix: str) -> BuiltGraph:
        g, vae = self._vae_graph()
        return decode_graph(g, latent, vae, prefix=prefix, first_id=9100, keep=self.keep_outputs)
