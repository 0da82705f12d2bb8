"""Every graph a builder makes validates against the recorded object_info; custom workflows map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyui_fake import recorded_object_info
from dream_window.backends.comfyui.graphs import (
    CustomWorkflow,
    FluxWorkflowBuilder,
    SD15WorkflowBuilder,
)
from dream_window.backends.comfyui.validation import validate_graph
from dream_window.config import FluxModelFiles
from dream_window.errors import ConfigError
from dream_window.values.generation import GenerationRequest
from tests.backends.comfyui.conftest import BUILDERS, CFG
from tests.conftest import load_json

REQ = GenerationRequest(
    prompt="misty forest", seed=2**62, width=256, height=512, steps=4, cfg=1.0, denoise=0.4
)


def _graphs(builder):  # type: ignore[no-untyped-def]
    yield "txt2img", builder.build_txt2img(REQ, prefix="dream-window/t/frame", want_latent=True)
    yield (
        "img2img",
        builder.build_img2img(REQ, "dream-window/t/frame_00001_.png [output]", prefix="p", want_latent=True),
    )
    yield "encode", builder.build_encode(["a.png", "b.png [output]"], prefix="p")
    yield "decode", builder.build_decode("dream-window/t/lat_1.latent", prefix="p")


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_graph_validates_against_recorded_object_info(name: str) -> None:
    info = recorded_object_info()
    for kind, built in _graphs(BUILDERS[name]):
        result = validate_graph(built.graph, info)
        assert result.ok and result.node_errors == {}, (name, kind, result.body())
        if built.image_node:  # frames go to temp/ (wiped at each server start), not output/
            assert built.graph[built.image_node] == {
                "class_type": "PreviewImage",
                "inputs": {"images": [built.graph[built.image_node]["inputs"]["images"][0], 0]},
            }
        for nid in built.latent_nodes:
            assert built.graph[nid]["class_type"] == "SaveLatent"


def test_keep_outputs_saves_every_frame_under_our_prefix() -> None:
    keep = SD15WorkflowBuilder(CFG.model_copy(update={"keep_outputs": True}))
    info = recorded_object_info()
    for kind, built in _graphs(keep):
        assert validate_graph(built.graph, info).ok, kind
        if built.image_node:
            node = built.graph[built.image_node]
            assert node["class_type"] == "SaveImage" and node["inputs"]["filename_prefix"] in (
                "p",
                "dream-window/t/frame",
            )


def test_family_details() -> None:
    flux = BUILDERS["flux-checkpoint"].build_txt2img(REQ, prefix="p").graph
    assert {n["class_type"] for n in flux.values()} >= {
        "CheckpointLoaderSimple",
        "EmptySD3LatentImage",
        "KSampler",
    }
    ks = next(n for n in flux.values() if n["class_type"] == "KSampler")["inputs"]
    assert (ks["steps"], ks["cfg"], ks["sampler_name"], ks["scheduler"], ks["seed"]) == (
        4,
        1.0,
        "euler",
        "simple",
        2**62,
    )
    turbo = BUILDERS["sdxl-turbo"].build_img2img(REQ, "x.png", prefix="p").graph
    assert (
        next(n for n in turbo.values() if n["class_type"] == "SDTurboScheduler")["inputs"]["denoise"] == 0.4
    )
    sd15 = BUILDERS["sd15"].build_txt2img(REQ, prefix="p").graph
    assert any(n["class_type"] == "EmptyLatentImage" for n in sd15.values())
    assert BUILDERS["flux-split"].latent_channels == 16 and BUILDERS["sd15"].latent_channels == 4


def test_flux_split_matches_the_recorded_user_workflow(recorded: Path) -> None:
    user = load_json(recorded / "09_flux_sdxl_validation" / "workflow_flux_schnell_split_ksampler.json")
    keep = CFG.model_copy(update={"flux": FluxModelFiles(layout="split"), "keep_outputs": True})
    ours = FluxWorkflowBuilder(keep).build_txt2img(REQ, prefix="p").graph  # the user's has SaveImage
    assert sorted(n["class_type"] for n in ours.values()) == sorted(n["class_type"] for n in user.values())
    loaders = {n["class_type"]: n["inputs"] for n in ours.values() if "Loader" in n["class_type"]}
    user_loaders = {n["class_type"]: n["inputs"] for n in user.values() if "Loader" in n["class_type"]}
    user_loaders["DualCLIPLoader"].pop("device")  # optional; we leave it out
    assert loaders == user_loaders


def _write(tmp_path: Path, recorded: Path) -> Path:
    p = tmp_path / "wf.json"
    p.write_text((recorded / "04_img2img" / "workflow_api.json").read_text())
    return p


def test_custom_workflow_mapping(tmp_path: Path, recorded: Path) -> None:
    graph = load_json(recorded / "04_img2img" / "workflow_api.json")
    load = next(k for k, n in graph.items() if n["class_type"] == "LoadImage")
    ks = next(k for k, n in graph.items() if n["class_type"] == "KSampler")
    pos = graph[ks]["inputs"]["positive"][0]
    wf = CustomWorkflow(
        _write(tmp_path, recorded),
        {
            "prompt": f"{pos}.text",
            "seed": f"{ks}.seed",
            "denoise": f"{ks}.denoise",
            "input_image": f"{load}.image",
        },
    )
    built = wf.build_img2img(REQ, "in.png", prefix="dream-window/x/frame")
    assert built.graph[pos]["inputs"]["text"] == "misty forest"
    assert built.graph[ks]["inputs"]["seed"] == 2**62 and built.graph[ks]["inputs"]["denoise"] == 0.4
    assert built.graph[load]["inputs"]["image"] == "in.png"
    # The user's SaveImage becomes a PreviewImage fed by the same link: we only download its frames.
    saved = graph[built.image_node]["inputs"]["images"]
    assert built.graph[built.image_node] == {"class_type": "PreviewImage", "inputs": {"images": saved}}
    assert validate_graph(built.graph, recorded_object_info()).ok
    assert validate_graph(wf.build_decode("l.latent", prefix="p").graph, recorded_object_info()).ok
    keep = CustomWorkflow(
        _write(tmp_path, recorded), {"prompt": f"{pos}.text"}, keep_outputs=True
    ).build_txt2img(REQ, prefix="dream-window/x/frame")
    assert keep.graph[built.image_node]["class_type"] == "SaveImage"
    assert keep.graph[built.image_node]["inputs"]["filename_prefix"] == "dream-window/x/frame"
    assert json.loads(json.dumps(built.graph))  # still plain JSON


@pytest.mark.parametrize(
    "mapping,needle",
    [
        ({"prompt": "99.text"}, "must be 'node_id.input'"),
        ({"prompt": "3.nope"}, "has no input 'nope'"),
        ({"promt": "6.text"}, "unknown key 'promt'"),
        ({}, "needs at least 'prompt'"),
    ],
)
def test_custom_workflow_bad_mapping(
    tmp_path: Path, recorded: Path, mapping: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        CustomWorkflow(_write(tmp_path, recorded), mapping)
    assert needle in str(info.value) or any(needle in p for p in info.value.problems)


def test_custom_workflow_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [1, 2]}')
    with pytest.raises(ConfigError, match="not an API-format workflow"):
        CustomWorkflow(bad, {"prompt": "1.text"})
    with pytest.raises(ConfigError, match=r"comfyui.workflow .*missing.json does not exist"):
        CustomWorkflow(tmp_path / "missing.json", {"prompt": "1.text"})
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(
        '{"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "café"}}}'.encode("latin-1")
    )
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        CustomWorkflow(latin1, {"prompt": "1.text"})
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nests too deeply"):
        CustomWorkflow(deep, {"prompt": "1.text"})
