"""The fake ComfyUI server (``comfyui_fake``) held against the recordings of a real ComfyUI v0.33.0.

``test_replay.py`` replays recorded runs and compares the *order of message types*; this file
compares what is *inside* them: full 400 bodies, the key layout of every WebSocket payload, the
bytes of binary preview headers, history and job entries, server information, and ``.latent``
files as the ``safetensors`` library reads them. Nothing here decodes with our client's code, so
a misunderstanding shared by the client and the fake cannot pass unseen (the one test that does
use the client's ``latent_file`` checks it against the fake, not the other way round).
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import safetensors.numpy
from PIL import Image

from comfyui_fake import ComfyTestServer, running_comfy_server
from tests.conftest import hang_guard, load_json

Frame = tuple[str, Any]  # ("text", message) or ("binary", bytes)


def layout(value: Any) -> Any:
    """A value's shape: dict keys kept, leaves replaced by their type, lists by the set of their
    items' shapes (so a traceback of 2 lines and one of 5 have the same layout)."""
    if isinstance(value, dict):
        return {k: layout(v) for k, v in value.items()}
    if isinstance(value, list):
        return ["list", sorted({json.dumps(layout(v), sort_keys=True) for v in value})]
    return type(value).__name__


def without_tracebacks(value: Any) -> Any:
    """Tracebacks name the server's own source lines: only their layout can match."""
    if isinstance(value, dict):
        return {k: layout(v) if k == "traceback" else without_tracebacks(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_tracebacks(v) for v in value]
    return value


def _transcript(recorded: Path, folder: str) -> list[dict[str, Any]]:
    return load_json(recorded / folder / "transcript.json")


def _posts(transcript: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e
        for e in transcript
        if e["dir"] == "http" and e["request"]["path"] == "/prompt" and e["request"]["method"] == "POST"
    ]


def _post_of(transcript: list[dict[str, Any]], prompt_id: str) -> dict[str, Any]:
    return next(
        e["request"]["body"]["json"]
        for e in _posts(transcript)
        if (e["response"]["body"].get("json") or {}).get("prompt_id") == prompt_id
    )


def _recorded_run(recorded: Path, folder: str, prompt_id: str) -> list[dict[str, Any]]:
    """The WebSocket frames the recording's socket got for one prompt, execution_start to the end."""
    frames = [e for e in _transcript(recorded, folder) if e["dir"] == "ws_in"]
    start = next(
        i
        for i, e in enumerate(frames)
        if e["kind"] == "text"
        and e["json"]["type"] == "execution_start"
        and e["json"]["data"]["prompt_id"] == prompt_id
    )
    end = next(
        i
        for i, e in enumerate(frames)
        if i > start
        and e["kind"] == "text"
        and e["json"]["type"] == "executing"
        and e["json"]["data"] == {"node": None, "prompt_id": prompt_id}
    )
    return frames[start : end + 1]


def _recorded_layouts(frames: list[dict[str, Any]], recorded_folder: Path) -> list[Any]:
    out = []
    for e in frames:
        if e["kind"] == "text":
            out.append((e["json"]["type"], layout(e["json"]["data"])))
        else:
            out.append(_binary_layout((recorded_folder / e["raw_frame_file"]).read_bytes()))
    return out


def _binary_layout(frame: bytes) -> tuple[Any, ...]:
    """Event type, then the format code (type 1) or the metadata's keys in order (type 4)."""
    event, second = struct.unpack(">II", frame[:8])
    if event == 4:
        return ("binary", 4, list(json.loads(frame[8 : 8 + second])))
    return ("binary", event, second)


class RawSocket:
    """A plain aiohttp WebSocket that keeps every frame as it came."""

    def __init__(self, server: ComfyTestServer, client_id: str, *, feature_flags: bool = False) -> None:
        self.url = server.url.replace("http", "ws") + f"/ws?clientId={client_id}"
        self.feature_flags = feature_flags
        self.greeting: list[dict[str, Any]] = []
        self.frames: list[Frame] = []

    async def __aenter__(self) -> RawSocket:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.url)
        if self.feature_flags:
            await self.ws.send_str(
                json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            )
        for _ in range(2 if self.feature_flags else 1):
            self.greeting.append(json.loads((await self.ws.receive()).data))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        await self.session.close()

    async def until_done(self, prompt_id: str) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.frames.append(("binary", msg.data))
                continue
            m = json.loads(msg.data)
            self.frames.append(("text", m))
            if m["type"] == "executing" and m["data"] == {"node": None, "prompt_id": prompt_id}:
                return

    def run_frames(self) -> list[Frame]:
        start = next(
            i for i, (k, m) in enumerate(self.frames) if k == "text" and m["type"] == "execution_start"
        )
        return self.frames[start:]

    def layouts(self) -> list[Any]:
        return [
            (m["type"], layout(m["data"])) if kind == "text" else _binary_layout(m)
            for kind, m in self.run_frames()
        ]

    def texts(self, event: str) -> list[dict[str, Any]]:
        return [m["data"] for kind, m in self.frames if kind == "text" and m["type"] == event]


async def _run(
    server: ComfyTestServer, http: aiohttp.ClientSession, body: dict[str, Any], *, feature_flags: bool = False
) -> tuple[RawSocket, str]:
    sock = RawSocket(server, body["client_id"], feature_flags=feature_flags)
    async with sock:
        resp = await http.post(server.url + "/prompt", json=body)
        assert resp.status == 200, await resp.text()
        pid = (await resp.json())["prompt_id"]
        await hang_guard(sock.until_done(pid), 30)
    return sock, pid


# --- POST /prompt -------------------------------------------------------------------------------


async def _replay_validation_cases(
    recorded: Path, server: ComfyTestServer
) -> list[tuple[int, str, dict[str, Any], int, str, str]]:
    summary = load_json(recorded / "06_validation_errors" / "summary.json")
    posts = _posts(_transcript(recorded, "06_validation_errors"))
    assert len(posts) == len(summary) == 21
    answers = []
    async with aiohttp.ClientSession() as http:
        for index, ((label, want), post) in enumerate(zip(summary.items(), posts, strict=True)):
            body = post["request"]["body"]
            if "json" in body:
                resp = await http.post(server.url + "/prompt", json=body["json"])
            else:  # the recorded non-JSON body
                resp = await http.post(
                    server.url + "/prompt", data=b"not json!", headers={"Content-Type": "application/json"}
                )
            answers.append((index, label, want, resp.status, resp.content_type, await resp.text()))
    return answers


async def test_every_refused_prompt_gets_the_recorded_body(
    recorded: Path, comfy_server: ComfyTestServer
) -> None:
    for _, label, want, status, content_type, text in await _replay_validation_cases(recorded, comfy_server):
        assert status == want["status"], label
        if status == 500:
            assert (content_type, text) == ("text/plain", want["body"]), label
        elif status == 400:
            got = json.loads(text)
            # Everything as recorded: types, messages, details, input configs, received values...
            assert without_tracebacks(got) == without_tracebacks(want["body"]), label
            assert layout(got) == layout(want["body"]), label


async def test_accepted_prompts_take_the_recorded_numbers_and_keep_converted_values(
    recorded: Path, comfy_server: ComfyTestServer
) -> None:
    accepted = [
        (index, want, json.loads(text))
        for index, _, want, status, _, text in await _replay_validation_cases(recorded, comfy_server)
        if status == 200
    ]
    assert [layout(got) for _, _, got in accepted] == [layout(want["body"]) for _, want, _ in accepted]
    # Every JSON body took a queue number, refused or not: the recorded numbers run on through the
    # refusals (this session started at number 9 there, at 0 here).
    offsets = {want["body"]["number"] - index for index, want, _ in accepted}
    assert len(offsets) == 1
    assert [got["number"] for _, _, got in accepted] == [index for index, _, _ in accepted]
    # "4" for an INT is stored converted, as the recorded history shows.
    numeric = next(got["prompt_id"] for index, want, got in accepted if want["body"]["number"] == 18)
    recorded_entry = load_json(recorded / "10_history_after_runs" / "history_all.json")[
        "acfd9764-170e-4368-b337-768dcaa6697c"
    ]
    for _ in range(500):
        if numeric in comfy_server.history:
            break
        await asyncio.sleep(0.02)
    assert comfy_server.history[numeric]["prompt"][2]["3"]["inputs"]["steps"] == 4
    assert recorded_entry["prompt"][2]["3"]["inputs"]["steps"] == 4


async def test_flux_and_sdxl_graphs_pass_validation_then_fail_at_their_first_loader(
    recorded: Path, tmp_path: Path
) -> None:
    summary = load_json(recorded / "09_flux_sdxl_validation" / "summary.json")
    transcript = _transcript(recorded, "09_flux_sdxl_validation")
    recorded_jobs = {
        j["id"]: j for j in load_json(recorded / "10_history_after_runs" / "api_jobs.json")["jobs"]
    }
    dummies = {
        "flux1-schnell-fp8.safetensors",
        "sd_xl_turbo_1.0_fp16.safetensors",
        "flux1-schnell.safetensors",
        "clip_l.safetensors",
        "t5xxl_fp8_e4m3fn.safetensors",
        "ae.safetensors",
    }
    async with (
        running_comfy_server(root=tmp_path / "c", broken_models=dummies) as server,
        aiohttp.ClientSession() as http,
    ):
        for label, run in summary.items():
            body = _post_of(transcript, run["prompt_id"])
            sock, pid = await _run(server, http, body)
            types = [m["type"] if kind == "text" else "binary" for kind, m in sock.run_frames()]
            assert types == run["ws_types"][run["ws_types"].index("execution_start") :], label
            (error,) = sock.texts("execution_error")
            want = run["history_status"]["messages"][-1][1]
            assert layout(error) == layout(want), label
            for key in ("node_id", "node_type", "executed", "exception_type", "exception_message"):
                assert error[key] == want[key], (label, key)
            assert error["current_inputs"] == want["current_inputs"], label
            assert sorted(error["current_outputs"]) == sorted(want["current_outputs"]), label
            entry = server.history[pid]
            assert layout(entry["status"]) == layout(run["history_status"]), label
            assert [m[0] for m in entry["status"]["messages"]] == [
                m[0] for m in run["history_status"]["messages"]
            ]
            jobs = await (await http.get(server.url + "/api/jobs")).json()
            job = next(j for j in jobs["jobs"] if j["id"] == pid)
            assert layout(job) == layout(recorded_jobs[run["prompt_id"]]), label


# --- WebSocket payloads and binary frames -------------------------------------------------------


async def test_txt2img_sends_the_recorded_payloads_previews_history_and_job(
    recorded: Path, comfy_server: ComfyTestServer
) -> None:
    run = load_json(recorded / "summary_s02_txt2img.json")["02_txt2img"]
    frames = _recorded_run(recorded, "02_txt2img", run["prompt_id"])
    body = _post_of(_transcript(recorded, "02_txt2img"), run["prompt_id"])
    async with aiohttp.ClientSession() as http:
        sock, pid = await _run(comfy_server, http, body)
        assert sock.layouts() == _recorded_layouts(frames, recorded / "02_txt2img")
        # Type 1 previews: the same 8-byte header, a JPEG of the recorded size (16×16 latent
        # scaled up to the 512 px preview size).
        ours = [m for kind, m in sock.frames if kind == "binary"]
        theirs = [
            (recorded / "02_txt2img" / e["raw_frame_file"]).read_bytes()
            for e in frames
            if e["kind"] == "binary"
        ]
        assert len(ours) == len(theirs) == 4
        for mine, real in zip(ours, theirs, strict=True):
            assert mine[:8] == real[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x01"
            assert mine[8:10] == real[8:10] == b"\xff\xd8"
            assert Image.open(io.BytesIO(mine[8:])).size == Image.open(io.BytesIO(real[8:])).size
        history = await (await http.get(f"{comfy_server.url}/history/{pid}")).json()
        want_entry = load_json(recorded / "10_history_after_runs" / "history_all.json")[run["prompt_id"]]
        assert layout(history[pid]) == layout(want_entry)
        assert history[pid]["prompt"][3].keys() == want_entry["prompt"][3].keys()
        jobs = await (await http.get(comfy_server.url + "/api/jobs")).json()
        want_job = next(
            j
            for j in load_json(recorded / "10_history_after_runs" / "api_jobs.json")["jobs"]
            if j["id"] == run["prompt_id"]
        )
        assert layout(jobs) == layout({"jobs": [want_job], "pagination": jobs["pagination"]})
        assert jobs["jobs"][0]["preview_output"] == {
            **history[pid]["outputs"]["9"]["images"][0],
            "nodeId": "9",
            "mediaType": "images",
        }


async def test_type4_previews_carry_the_recorded_header_and_metadata(
    recorded: Path, comfy_server: ComfyTestServer
) -> None:
    folder = recorded / "03_txt2img_warm_feature_flags"
    run = load_json(recorded / "summary_s03_txt2img_warm_featureflags.json")["03_txt2img_warm_feature_flags"][
        0
    ]  # the run with previews
    frames = _recorded_run(recorded, folder.name, run["prompt_id"])
    transcript = _transcript(recorded, folder.name)
    body = _post_of(transcript, run["prompt_id"])
    cached = next(
        e["json"]["data"]["nodes"]
        for e in frames
        if e["kind"] == "text" and e["json"]["type"] == "execution_cached"
    )
    await comfy_server.prime_cache(body["prompt"], cached)  # the recording's server was warm
    async with aiohttp.ClientSession() as http:
        sock, pid = await _run(comfy_server, http, body, feature_flags=True)
    assert sock.layouts() == _recorded_layouts(frames, folder)
    real = [(folder / e["raw_frame_file"]).read_bytes() for e in frames if e["kind"] == "binary"]
    ours = [m for kind, m in sock.frames if kind == "binary"]
    assert len(ours) == len(real) == 4
    for mine, theirs in zip(ours, real, strict=True):
        (event, meta_len), (real_event, real_len) = (
            struct.unpack(">II", mine[:8]),
            struct.unpack(">II", theirs[:8]),
        )
        assert event == real_event == 4
        assert meta_len == real_len  # same key order, same separators, same-length ids
        meta, real_meta = mine[8 : 8 + meta_len], theirs[8 : 8 + real_len]
        assert (
            meta == json.dumps(json.loads(meta)).encode()
            and real_meta == json.dumps(json.loads(real_meta)).encode()
        )
        assert json.loads(meta) == {**json.loads(real_meta), "prompt_id": pid}
        assert mine[8 + meta_len : 10 + meta_len] == b"\xff\xd8"


async def test_latent_interpolation_reruns_only_the_blend(
    recorded: Path, comfy_server: ComfyTestServer
) -> None:
    runs = load_json(recorded / "summary_s11_interp.json")["11_latent_interpolation"]
    transcript = _transcript(recorded, "11_latent_interpolation")
    async with aiohttp.ClientSession() as http:
        for i, run in enumerate(runs):
            frames = _recorded_run(recorded, "11_latent_interpolation", run["prompt_id"])
            cached = next(
                e["json"]["data"]["nodes"]
                for e in frames
                if e["kind"] == "text" and e["json"]["type"] == "execution_cached"
            )
            body = _post_of(transcript, run["prompt_id"])
            if i == 0:
                await comfy_server.prime_cache(body["prompt"], cached)
            sock, _ = await _run(comfy_server, http, body)
            (ours,) = sock.texts("execution_cached")
            assert sorted(ours["nodes"]) == sorted(cached), run["label"]
            assert sock.layouts() == _recorded_layouts(frames, recorded / "11_latent_interpolation"), run[
                "label"
            ]


# --- server information -------------------------------------------------------------------------


async def test_server_information_is_the_recorded_one(recorded: Path, comfy_server: ComfyTestServer) -> None:
    info = recorded / "01_server_info"
    # The recording's input/ held these two; with them the whole object_info is the recorded one.
    Image.new("RGB", (8, 8)).save(comfy_server.root / "input" / "example.png")
    (comfy_server.root / "input" / "not_really_an_image.png").write_bytes(b"not a png")
    same = {
        "/object_info": "object_info.json",
        "/object_info/KSampler": "object_info_KSampler.json",
        "/object_info/CheckpointLoaderSimple": "object_info_CheckpointLoaderSimple.json",
        "/object_info/NoSuchNode": "object_info_NoSuchNode.json",
        "/features": "features.json",
        "/prompt": "prompt_get.json",
        "/queue": "queue_empty.json",
        "/history": "history_empty.json",
        "/embeddings": "embeddings.json",
        "/models": "models.json",
        "/models/checkpoints": "models_checkpoints.json",
        "/models/vae": "models_vae.json",
        "/api/jobs": "api_jobs_empty.json",
    }
    async with aiohttp.ClientSession() as http:
        for path, name in same.items():
            resp = await http.get(comfy_server.url + path)
            assert resp.status == 200 and resp.content_type == "application/json", path
            assert await resp.json() == load_json(info / name), path
        missing = await http.get(comfy_server.url + "/models/nonexistent_folder")
        assert missing.status == 404 and await missing.read() == b""
        assert await (await http.get(comfy_server.url + "/models/loras")).json() == []  # known, empty
        for path in ("/system_stats", "/api/system_stats"):
            stats = await (await http.get(comfy_server.url + path)).json()
            assert layout(stats) == layout(load_json(info / "system_stats.json")), path


async def test_websocket_greetings_are_the_recorded_ones(
    recorded: Path, comfy_server: ComfyTestServer
) -> None:
    greetings: dict[str, list[dict[str, Any]]] = {}
    for e in _transcript(recorded, "01_server_info"):
        if e["dir"] == "ws_in":
            greetings.setdefault(e["ws"], []).append(e["json"])
    for name, flags in (("bare", False), ("with_feature_flags", True)):
        want = greetings[name]
        async with RawSocket(comfy_server, want[0]["data"]["sid"], feature_flags=flags) as sock:
            assert sock.greeting == want, name


# --- .latent files ------------------------------------------------------------------------------


def _latent_graph(source: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {
        "1": source,
        "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": prefix}},
    }


async def _save_latent(server: ComfyTestServer, http: aiohttp.ClientSession, graph: dict[str, Any]) -> Path:
    body = {"prompt": graph, "client_id": "latents"}
    sock, _ = await _run(server, http, body)
    (executed,) = sock.texts("executed")
    (ref,) = executed["output"]["latents"]
    return server.root / "output" / ref["subfolder"] / ref["filename"]


async def test_latent_files_are_the_safetensors_comfyui_writes_and_reads(
    comfy_server: ComfyTestServer,
) -> None:
    empty = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 32, "batch_size": 2}}
    async with aiohttp.ClientSession() as http:
        path = await _save_latent(comfy_server, http, _latent_graph(empty, "latents/empty"))
        data = path.read_bytes()
        tensors = safetensors.numpy.load(data)
        assert set(tensors) == {"latent_tensor", "latent_format_version_0"}
        assert tensors["latent_tensor"].shape == (2, 4, 4, 8) and tensors["latent_tensor"].dtype == np.float32
        assert tensors["latent_format_version_0"].shape == (0,)
        (header_len,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8 : 8 + header_len])["__metadata__"]
        assert json.loads(metadata["prompt"])["2"]["class_type"] == "SaveLatent"

        # LoadLatent reads what safetensors writes, and scales files without the marker by 1/0.18215.
        values = np.arange(2 * 4 * 4 * 8, dtype=np.float32).reshape(2, 4, 4, 8) / 100
        (comfy_server.root / "input" / "new.latent").write_bytes(
            safetensors.numpy.save(
                {"latent_tensor": values, "latent_format_version_0": np.zeros((0,), np.float32)}
            )
        )
        (comfy_server.root / "input" / "legacy.latent").write_bytes(
            safetensors.numpy.save({"latent_tensor": values})
        )
        for name, scale in (("new.latent", 1.0), ("legacy.latent", 1.0 / 0.18215)):
            load = {"class_type": "LoadLatent", "inputs": {"latent": name}}
            back = safetensors.numpy.load(
                (await _save_latent(comfy_server, http, _latent_graph(load, "rt"))).read_bytes()
            )
            np.testing.assert_allclose(back["latent_tensor"], values * np.float32(scale), rtol=1e-6)


async def test_our_latent_file_module_agrees_with_the_fake(comfy_server: ComfyTestServer) -> None:
    """The client's own reader and writer, checked against files the safetensors library made."""
    from dream_window.backends.comfyui import latent_file

    values = np.linspace(-1, 1, 4 * 4 * 8, dtype=np.float32).reshape(1, 4, 4, 8)
    (comfy_server.root / "input" / "ours.latent").write_bytes(latent_file.dumps(values))
    np.testing.assert_array_equal(safetensors.numpy.load(latent_file.dumps(values))["latent_tensor"], values)
    async with aiohttp.ClientSession() as http:
        load = {"class_type": "LoadLatent", "inputs": {"latent": "ours.latent"}}
        saved = (await _save_latent(comfy_server, http, _latent_graph(load, "ours"))).read_bytes()
    np.testing.assert_array_equal(latent_file.loads(saved), values)
