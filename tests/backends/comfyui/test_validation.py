"""Validation against object_info: the recorded POST /prompt error cases, replayed over HTTP
against the test server, must come back with the recorded status and error shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfyui_fake import ComfyTestServer, recorded_object_info
from dream_window.backends.comfyui.validation import (
    check_model_files,
    combo_options,
    render_error,
    validate_graph,
)
from tests.conftest import load_json


def _cases(recorded: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    transcript = load_json(recorded / "06_validation_errors" / "transcript.json")
    summary = load_json(recorded / "06_validation_errors" / "summary.json")
    posts = [
        e
        for e in transcript
        if e["dir"] == "http" and e["request"]["path"] == "/prompt" and e["request"]["method"] == "POST"
    ]
    assert len(posts) == len(summary)
    return [
        (label, post["request"]["body"], result)
        for (label, result), post in zip(summary.items(), posts, strict=True)
    ]


def _shape(body: dict[str, Any]) -> dict[str, Any]:
    """What must match the recording: types, messages, which node and input, what was received."""
    err = body.get("error") or {}
    nodes = {}
    for nid, entry in (body.get("node_errors") or {}).items():
        nodes[nid] = {
            "class_type": entry["class_type"],
            "dependent_outputs": sorted(entry["dependent_outputs"]),
            "errors": [
                (
                    e["type"],
                    e["message"],
                    e["details"],
                    e["extra_info"].get("input_name"),
                    e["extra_info"].get("received_value"),
                )
                for e in entry["errors"]
            ],
        }
    return {
        "type": err.get("type"),
        "message": err.get("message"),
        "extra": {k: v for k, v in (err.get("extra_info") or {}).items() if k in ("node_id", "class_type")},
        "nodes": nodes,
    }


async def test_recorded_validation_cases_replayed_over_http(
    recorded: Path, comfy_server: ComfyTestServer
) -> None:
    async with aiohttp.ClientSession() as http:
        for label, body, want in _cases(recorded):
            if "json" in body:
                resp = await http.post(comfy_server.url + "/prompt", json=body["json"])
            else:  # the recorded non-JSON body
                resp = await http.post(
                    comfy_server.url + "/prompt",
                    data=b"not json!",
                    headers={"Content-Type": "application/json"},
                )
            assert resp.status == want["status"], label
            if want["status"] == 500:
                assert resp.content_type == "text/plain", label
                continue
            got = await resp.json()
            if want["status"] == 200:
                assert set(got) == {"prompt_id", "number", "node_errors"}, label
                continue
            assert _shape(got) == _shape(want["body"]), label
            # the full input_config survives for short combos and is null for long ones
            for nid, entry in want["body"]["node_errors"].items():
                for e_want, e_got in zip(entry["errors"], got["node_errors"][nid]["errors"], strict=True):
                    if e_want["type"] == "value_not_in_list":
                        assert e_got["extra_info"]["input_config"] == e_want["extra_info"]["input_config"], (
                            label
                        )


def test_both_combo_encodings() -> None:
    info = recorded_object_info()
    legacy = info["KSampler"]["input"]["required"]["sampler_name"]
    v3 = info["BasicScheduler"]["input"]["required"]["scheduler"]
    assert isinstance(legacy[0], list) and v3[0] == "COMBO"
    assert "euler" in combo_options(legacy)
    assert "simple" in combo_options(v3)
    assert combo_options(["INT", {"min": 0}]) is None
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "2": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["1", 0], "scheduler": "no_such", "steps": 4, "denoise": 1.0},
        },
        "3": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "4": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["1", 1]}},
        "6": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["5", 0]}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["4", 0],
                "guider": ["6", 0],
                "sampler": ["3", 0],
                "sigmas": ["2", 0],
                "latent_image": ["7", 0],
            },
        },
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": "x"}},
    }
    result = validate_graph(graph, info)
    assert not result.ok
    (err,) = result.node_errors["2"]["errors"]
    assert err["type"] == "value_not_in_list" and err["extra_info"]["input_name"] == "scheduler"
    graph["2"]["inputs"]["scheduler"] = "simple"
    assert validate_graph(graph, info).ok


def test_missing_model_is_named_with_what_the_server_has() -> None:
    info = recorded_object_info()
    graph = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux1-dev.safetensors"}}}
    (line,) = check_model_files(graph, info)
    assert line.startswith(
        "checkpoint 'flux1-dev.safetensors' is not on the ComfyUI server (put it in ComfyUI's models/checkpoints folder); it has: "
    )
    assert "tiny_sd15.safetensors" in line


def test_rendered_rejection_is_readable(recorded: Path) -> None:
    summary = load_json(recorded / "06_validation_errors" / "summary.json")
    body = summary["two_node_errors"]["body"]
    text = render_error(body["error"], body["node_errors"])
    assert (
        "node 4 (CheckpointLoaderSimple) input 'ckpt_name': checkpoint 'nope.safetensors' is not on the "
        "ComfyUI server (put it in ComfyUI's models/checkpoints folder); it has: "
        "corrupt_checkpoint.safetensors" in text
    )
    assert "node 5 (EmptyLatentImage): required input" in text
    sampler = summary["combo_value_not_in_list_sampler"]["body"]
    text = render_error(sampler["error"], sampler["node_errors"], recorded_object_info())
    assert (
        "'not_a_sampler' is not allowed; allowed: euler" in text
    )  # the long list recovered from object_info
    unknown = summary["unknown_class_type"]["body"]
    assert "KSamplerDoesNotExist" in render_error(unknown["error"], unknown["node_errors"])


def test_object_info_packaged_equals_recording(recorded: Path) -> None:
    assert recorded_object_info() == json.loads(
        (recorded / "01_server_info" / "object_info.json").read_text()
    )
    assert len(recorded_object_info()) == 886


@pytest.mark.parametrize("value,ok", [("4", True), (4, True), ("four", False), (0, False)])
def test_int_conversion_like_comfyui(value: Any, ok: bool) -> None:
    info = recorded_object_info()
    graph = {
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": value}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "x"}},
    }
    assert validate_graph(graph, info).ok is ok
