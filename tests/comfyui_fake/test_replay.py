"""Fidelity: recorded scenarios replayed against the test server give the recorded WebSocket
message types in the recorded order (and the recorded cached sets, outputs and errors).

Each run is replayed with a raw aiohttp WebSocket (not our client), so this tests the server
against the recording; the client is tested against the server elsewhere. Where the recording's
server had cached nodes from earlier scenarios, the same nodes are primed first.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from comfyui_fake import ComfyTestServer
from dream_window.backends.comfyui.messages import parse_binary
from tests.conftest import hang_guard, load_json


def _runs(recorded: Path, summary: str, scenario: str) -> list[dict[str, Any]]:
    data = load_json(recorded / summary)[scenario]
    return (
        data
        if isinstance(data, list)
        else [v for v in data.values() if isinstance(v, dict) and "ws_types" in v]
    )


def _recorded_post(recorded: Path, folder: str, prompt_id: str) -> tuple[dict[str, Any], list[str]]:
    """The POST /prompt body of a recorded run, and the nodes its execution_cached listed."""
    transcript = load_json(recorded / folder / "transcript.json")
    body = next(
        e["request"]["body"]["json"]
        for e in transcript
        if e["dir"] == "http"
        and e["request"]["path"] == "/prompt"
        and e["request"]["method"] == "POST"
        and (e["response"]["body"].get("json") or {}).get("prompt_id") == prompt_id
    )
    cached = next(
        e["json"]["data"]["nodes"]
        for e in transcript
        if e["dir"] == "ws_in"
        and e.get("kind") == "text"
        and e["json"]["type"] == "execution_cached"
        and e["json"]["data"]["prompt_id"] == prompt_id
    )
    return body, cached


class Recorder:
    """A raw WebSocket client that writes down what arrives, as the recording did."""

    def __init__(self, server: ComfyTestServer, client_id: str, *, feature_flags: bool = False) -> None:
        self.url = server.url.replace("http", "ws") + f"/ws?clientId={client_id}"
        self.client_id = client_id
        self.feature_flags = feature_flags
        self.types: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self.previews: list[Any] = []

    async def __aenter__(self) -> Recorder:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.url)
        if self.feature_flags:
            await self.ws.send_str(
                json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            )
        greeting = json.loads((await self.ws.receive()).data)
        assert greeting["type"] == "status" and greeting["data"]["sid"] == self.client_id
        if self.feature_flags:
            assert json.loads((await self.ws.receive()).data)["type"] == "feature_flags"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        await self.session.close()

    async def until_done(self, prompt_id: str, *, on_message: Any = None) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                p = parse_binary(msg.data)
                self.types.append(f"binary(evt{p.event})")
                self.previews.append(p)
                continue
            m = json.loads(msg.data)
            self.types.append(m["type"])
            self.messages.append(m)
            if on_message is not None:
                await on_message(m)
            if m["type"] == "executing" and m["data"]["node"] is None and m["data"]["prompt_id"] == prompt_id:
                return


def _body_types(types: list[str]) -> list[str]:
    """From execution_start on: leading status messages depend on other clients' traffic."""
    return types[types.index("execution_start") :]


async def _replay(
    server: ComfyTestServer,
    http: aiohttp.ClientSession,
    body: dict[str, Any],
    *,
    feature_flags: bool = False,
    on_message: Any = None,
) -> Recorder:
    rec = Recorder(server, body["client_id"], feature_flags=feature_flags)
    async with rec:
        resp = await http.post(server.url + "/prompt", json=body)
        assert resp.status == 200, await resp.text()
        pid = (await resp.json())["prompt_id"]
        await hang_guard(rec.until_done(pid, on_message=on_message), 30)
    return rec


async def _check_runs(
    recorded: Path,
    server: ComfyTestServer,
    summary: str,
    scenario: str,
    folder: str,
    *,
    feature_flags: bool = False,
    prime: bool = True,
) -> list[Recorder]:
    recs = []
    async with aiohttp.ClientSession() as http:
        for run in _runs(recorded, summary, scenario):
            body, cached = _recorded_post(recorded, folder, run["prompt_id"])
            if prime and cached:
                await server.prime_cache(body["prompt"], cached)
            rec = await _replay(server, http, body, feature_flags=feature_flags)
            ours = next(m["data"]["nodes"] for m in rec.messages if m["type"] == "execution_cached")
            assert sorted(ours) == sorted(cached), run["label"]
            want = [t for t in run["ws_types"]]
            assert _body_types(rec.types) == _body_types(want), run["label"]
            recs.append(rec)
    return recs


async def test_txt2img_cold_with_type1_previews(recorded: Path, comfy_server: ComfyTestServer) -> None:
    body, _ = _recorded_post(
        recorded, "02_txt2img", load_json(recorded / "summary_s02_txt2img.json")["02_txt2img"]["prompt_id"]
    )
    want = load_json(recorded / "summary_s02_txt2img.json")["02_txt2img"]["ws_types"]
    async with aiohttp.ClientSession() as http:
        rec = await _replay(comfy_server, http, body)
        assert _body_types(rec.types) == _body_types(want)
        assert rec.types[:2] == ["status", "status"]
        # executed names the file; /history has it by executing{node:null}; /view serves the PNG
        executed = next(m["data"] for m in rec.messages if m["type"] == "executed")
        img = executed["output"]["images"][0]
        assert img == {"filename": "txt2img_00001_.png", "subfolder": "dreamwindow", "type": "output"}
        pid = executed["prompt_id"]
        hist = await (await http.get(f"{comfy_server.url}/history/{pid}")).json()
        assert hist[pid]["outputs"]["9"]["images"] == [img]
        assert hist[pid]["status"]["status_str"] == "success" and hist[pid]["status"]["completed"] is True
        assert [m[0] for m in hist[pid]["status"]["messages"]] == [
            "execution_start",
            "execution_cached",
            "execution_success",
        ]
        assert len(hist[pid]["prompt"]) == 5 and hist[pid]["prompt"][3]["client_id"] == body["client_id"]
        view = await http.get(comfy_server.url + "/view", params=img)
        assert view.status == 200 and view.content_type == "image/png"
        assert view.headers["Content-Disposition"] == 'filename="txt2img_00001_.png"'
        assert (await view.read())[:8] == b"\x89PNG\r\n\x1a\n"
        missing = await http.get(comfy_server.url + "/view", params={**img, "filename": "nope.png"})
        assert missing.status == 404 and await missing.read() == b""
    assert all(p.event == 1 and p.image[:2] == b"\xff\xd8" for p in rec.previews) and len(rec.previews) == 4


async def test_txt2img_feature_flags_type4_previews(recorded: Path, comfy_server: ComfyTestServer) -> None:
    recs = await _check_runs(
        recorded,
        comfy_server,
        "summary_s03_txt2img_warm_featureflags.json",
        "03_txt2img_warm_feature_flags",
        "03_txt2img_warm_feature_flags",
        feature_flags=True,
    )
    assert recs[0].previews and all(p.event == 4 and p.meta["node_id"] == "3" for p in recs[0].previews)
    assert not recs[1].previews  # the run without preview_method


async def test_caching_scenario(recorded: Path, comfy_server: ComfyTestServer) -> None:
    """First run primed as recorded; the other three runs' cached sets come from our own cache."""
    runs = _runs(recorded, "summary_s05_caching.json", "05_caching")
    async with aiohttp.ClientSession() as http:
        files = []
        for i, run in enumerate(runs):
            body, cached = _recorded_post(recorded, "05_caching", run["prompt_id"])
            if i == 0 and cached:
                await comfy_server.prime_cache(body["prompt"], cached)
            rec = await _replay(comfy_server, http, body)
            ours = next(m["data"]["nodes"] for m in rec.messages if m["type"] == "execution_cached")
            assert sorted(ours) == sorted(cached), run["label"]
            assert _body_types(rec.types) == _body_types(run["ws_types"]), run["label"]
            files.append(
                next(
                    m["data"]["output"]["images"][0]["filename"]
                    for m in rec.messages
                    if m["type"] == "executed"
                )
            )
    want = [r["history_outputs"]["9"]["images"][0]["filename"] for r in runs]
    assert files == want  # the identical resubmit replays the old file name, no new file


async def test_img2img_uploads_and_run(recorded: Path, comfy_server: ComfyTestServer) -> None:
    png = (recorded / "02_txt2img" / "view_9_0.png").read_bytes()
    other = (recorded / "03_txt2img_warm_feature_flags" / "view_9_0.png").read_bytes()

    async def upload(http: aiohttp.ClientSession, data: bytes, name: str, **fields: str) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="image/png")
        for k, v in fields.items():
            form.add_field(k, v)
        resp = await http.post(comfy_server.url + "/upload/image", data=form)
        assert resp.status == 200
        return await resp.json()

    async with aiohttp.ClientSession() as http:
        # The recorded upload sequence: overwrite, identical duplicate, different bytes, root, temp.
        assert await upload(
            http, png, "frame_0001.png", overwrite="true", type="input", subfolder="dreamwindow"
        ) == {"name": "frame_0001.png", "subfolder": "dreamwindow", "type": "input"}
        assert (await upload(http, png, "frame_0001.png", type="input", subfolder="dreamwindow"))[
            "name"
        ] == "frame_0001.png"
        assert (await upload(http, other, "frame_0001.png", type="input", subfolder="dreamwindow"))[
            "name"
        ] == "frame_0001 (1).png"
        assert await upload(http, png, "dw_root.png") == {
            "name": "dw_root.png",
            "subfolder": "",
            "type": "input",
        }
        assert await upload(http, png, "dw_temp.png", type="temp", overwrite="1") == {
            "name": "dw_temp.png",
            "subfolder": "",
            "type": "temp",
        }
        info = await (await http.get(comfy_server.url + "/object_info/LoadImage")).json()
        assert info["LoadImage"]["input"]["required"]["image"][0] == [
            "dw_root.png"
        ]  # top level of input/ only
    await _check_runs(recorded, comfy_server, "summary_s04_img2img.json", "04_img2img", "04_img2img")


async def test_runtime_errors(recorded: Path, comfy_server: ComfyTestServer) -> None:
    (comfy_server.root / "input" / "not_really_an_image.png").write_bytes(b"this is not a png")
    recs = await _check_runs(
        recorded, comfy_server, "summary_s07_runtime_error.json", "07_runtime_error", "07_runtime_error"
    )
    errors = [next(m["data"] for m in r.messages if m["type"] == "execution_error") for r in recs]
    assert [(e["node_id"], e["node_type"]) for e in errors] == [
        ("4", "CheckpointLoaderSimple"),
        ("10", "LoadImage"),
    ]
    assert set(errors[0]) >= {
        "prompt_id",
        "node_id",
        "node_type",
        "executed",
        "exception_message",
        "exception_type",
        "traceback",
        "current_inputs",
        "current_outputs",
        "timestamp",
    }


async def test_custom_samplers_and_batch(recorded: Path, comfy_server: ComfyTestServer) -> None:
    recs = await _check_runs(
        recorded,
        comfy_server,
        "summary_s13_custom_samplers_and_batch.json",
        "13_custom_samplers_batch",
        "13_custom_samplers_batch_executed",
    )
    batch = next(m["data"] for m in recs[-1].messages if m["type"] == "executed")
    assert len(batch["output"]["images"]) == 2


async def test_interrupt_queue_and_free(recorded: Path, tmp_path: Path) -> None:
    from comfyui_fake import running_comfy_server

    summary = load_json(recorded / "summary_s08_interrupt_and_queue.json")["08_interrupt_queue_free"]
    transcript = load_json(recorded / "08_interrupt_queue_free" / "transcript.json")
    long_body = next(
        e["request"]["body"]["json"]
        for e in transcript
        if e["dir"] == "http" and e["request"]["path"] == "/prompt" and e["request"]["method"] == "POST"
    )
    long_body["prompt"]["5"]["inputs"].update(width=64, height=64)  # the 512 px image only costs time here
    async with (
        running_comfy_server(root=tmp_path / "c", step_delay=0.02) as server,
        aiohttp.ClientSession() as http,
    ):
        rec = Recorder(server, long_body["client_id"])
        async with rec:
            first = await (await http.post(server.url + "/prompt", json=long_body)).json()
            queued = []
            for seed in (1, 2, 3):
                b = json.loads(json.dumps(long_body))
                b["prompt"]["3"]["inputs"]["seed"] = seed
                queued.append((await (await http.post(server.url + "/prompt", json=b)).json())["prompt_id"])
            interrupted = asyncio.Event()

            async def on_message(m: dict[str, Any]) -> None:
                if m["type"] == "progress" and not interrupted.is_set():
                    interrupted.set()
                    q = await (await http.get(server.url + "/queue")).json()
                    assert [i[1] for i in q["queue_running"]] == [first["prompt_id"]]
                    assert [i[1] for i in q["queue_pending"]] == queued
                    r = await http.post(server.url + "/queue", json={"delete": [queued[0]]})
                    assert r.status == 200 and await r.read() == b""
                    await http.post(server.url + "/queue", json={"clear": True})
                    q = await (await http.get(server.url + "/queue")).json()
                    assert q["queue_pending"] == [] and len(q["queue_running"]) == 1
                    # Another id is a silent no-op; the running id interrupts.
                    await http.post(
                        server.url + "/interrupt", json={"prompt_id": "200621ad-78f8-483a-9443-8f56243ae528"}
                    )
                    r = await http.post(server.url + "/interrupt", json={"prompt_id": first["prompt_id"]})
                    assert r.status == 200 and await r.read() == b""

            await hang_guard(rec.until_done(first["prompt_id"], on_message=on_message), 30)
        tail = [t for t in rec.types if t not in ("progress", "progress_state")][-3:]
        assert tail == ["execution_interrupted", "status", "executing"]
        term = next(m["data"] for m in rec.messages if m["type"] == "execution_interrupted")
        assert set(term) == set(summary["terminal"]["data"]) and term["node_type"] == "KSampler"
        hist = (await (await http.get(f"{server.url}/history/{first['prompt_id']}")).json())[
            first["prompt_id"]
        ]
        want_hist = load_json(recorded / "08_interrupt_queue_free" / "history_interrupted.json")
        want_entry = next(iter(want_hist.values())) if "status" not in want_hist else want_hist
        assert hist["status"]["status_str"] == want_entry["status"]["status_str"] == "error"
        assert hist["status"]["completed"] is False and hist["outputs"] == {}
        # /free empties the cache: the next run executes everything again
        assert (
            await http.post(server.url + "/free", json={"unload_models": True, "free_memory": True})
        ).status == 200
        body, _ = _recorded_post(recorded, "08_interrupt_queue_free", summary["after_free"]["prompt_id"])
        after = await _replay(server, http, body)
        assert next(m["data"]["nodes"] for m in after.messages if m["type"] == "execution_cached") == []
        assert _body_types(after.types) == _body_types(summary["after_free"]["ws_types"])
        assert [r.path for r in server.seen("/interrupt")] == ["/interrupt", "/interrupt"]


async def test_routing_and_reconnect(comfy_server: ComfyTestServer, recorded: Path) -> None:
    """Another clientId sees only status (and progress of prompts without client_id); a reconnect
    with the same clientId gets status + executing{node} and the rest of the stream."""
    body, _ = _recorded_post(
        recorded, "02_txt2img", load_json(recorded / "summary_s02_txt2img.json")["02_txt2img"]["prompt_id"]
    )
    comfy_server.step_delay = 0.02
    body["prompt"]["3"]["inputs"]["steps"] = 12
    async with aiohttp.ClientSession() as http:
        observer = Recorder(comfy_server, "observer")
        async with observer:
            seen: list[str] = []

            async def watch() -> None:
                async for msg in observer.ws:
                    seen.append(json.loads(msg.data)["type"])

            watcher = asyncio.create_task(watch())
            main = Recorder(comfy_server, body["client_id"])
            await main.__aenter__()
            pid = (await (await http.post(comfy_server.url + "/prompt", json=body)).json())["prompt_id"]
            while "progress" not in main.types:
                msg = await main.ws.receive()
                main.types.append(json.loads(msg.data)["type"])
            await main.__aexit__()
            again = Recorder(comfy_server, body["client_id"])
            async with again:
                await hang_guard(again.until_done(pid), 30)
            assert again.types[0] == "executing" and again.messages[0]["data"] == {"node": "3"}
            assert again.types[-1] == "executing" and "executed" in again.types
            assert set(seen) == {"status"}  # the observer saw none of that prompt's execution
            # a prompt without client_id: progress reaches everyone, nothing else does
            no_client = {k: v for k, v in body.items() if k != "client_id"}
            no_client["prompt"]["3"]["inputs"]["seed"] = 99
            pid2 = (await (await http.post(comfy_server.url + "/prompt", json=no_client)).json())["prompt_id"]
            for _ in range(500):
                await asyncio.sleep(0.02)
                if await (await http.get(f"{comfy_server.url}/history/{pid2}")).json():
                    break
            await asyncio.sleep(0.05)
            watcher.cancel()
        assert set(seen) == {"status", "progress", "progress_state"}
