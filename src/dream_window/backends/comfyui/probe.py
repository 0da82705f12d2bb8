"""The start-up check: do our graphs fit this server? One public function, used by the backend's
``start()`` and by ``dream-window doctor``, so both say the same thing about the same server.

Checked against the server's live ``object_info``: the model files our loaders name (a missing
checkpoint is named with what the server has instead), then every graph we may send validated
node by node, as ComfyUI itself would before queueing it. The latent walk's graph is checked on
its own: a server that cannot walk can still dream (interpolate then slerps keyframe latents).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dream_window.backends.comfyui.client import ComfyUIClient
from dream_window.backends.comfyui.graphs import BuiltGraph, CustomWorkflow, WorkflowBuilder
from dream_window.backends.comfyui.validation import check_model_files, render_error, validate_graph
from dream_window.config import GenerationConfig
from dream_window.values.generation import GenerationRequest


@dataclass(frozen=True, slots=True)
class ProbeResult:
    problems: list[str]  # the generation graphs: each problem stops the backend
    walk_problems: list[str]  # the latent walk's graph: the walk is unavailable on this server
    # True when ``problems`` are model files the server does not have (not a graph that is wrong).
    models_missing: bool = False


def probe_request(generation: GenerationConfig) -> GenerationRequest:
    """A request shaped like the dream's (size, steps, cfg): graphs are checked as they will be sent."""
    return GenerationRequest(
        prompt="probe",
        seed=0,
        width=generation.width,
        height=generation.height,
        steps=generation.steps,
        cfg=generation.cfg,
        return_latent=True,  # the largest graph: with its SaveLatent branch
    )


def _problems(graph: BuiltGraph, info: dict[str, object]) -> list[str]:
    result = validate_graph(graph.graph, info, file_exists=lambda kind, name: True)
    return [] if result.ok else [render_error(result.error, result.node_errors, info, graph.graph)]


async def check_server(
    client: ComfyUIClient,
    builder: WorkflowBuilder | CustomWorkflow,
    probe: GenerationRequest,
    *,
    walk: bool,
) -> ProbeResult:
    """What keeps ``builder``'s graphs from running on ``client``'s server (empty lists: nothing)."""
    info = await client.get_object_info()
    txt2img = builder.build_txt2img(probe, prefix="dream-window/probe", want_latent=probe.return_latent)
    missing = check_model_files(txt2img.graph, info)
    problems = missing or _problems(txt2img, info)
    walk_problems: list[str] = []
    if walk and not problems and not isinstance(builder, CustomWorkflow):
        other = dataclasses.replace(probe, prompt="probe b", seed=1)
        graph = builder.build_walk_frame(
            probe, other, 0.5, prefix="dream-window/probe", noise="probe.latent", want_latent=True
        )
        walk_problems = _problems(graph, info)
    return ProbeResult(problems, walk_problems, models_missing=bool(missing))


def check_request(probe: GenerationRequest) -> GenerationRequest:
    """The model check's request: the smallest generation the configured model can make (one step
    at 64x64), enough to prove the server can load the model; nothing is kept."""
    return dataclasses.replace(
        probe, prompt="dream-window model check", width=64, height=64, steps=1, return_latent=False
    )
