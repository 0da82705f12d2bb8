"""A ComfyUI-protocol server for tests and benchmarks, faithful to the recording of v0.33.0.

Real aiohttp on a loopback port. It validates against the recorded ``object_info`` (with its model
lists replaced by this server's own files) and answers with the recorded error shapes; it really
executes graphs with the built-in engine (see :mod:`dream_window.testing.comfy_nodes`); it sends the
recorded WebSocket sequence (``execution_start``, ``execution_cached``, per node ``progress_state`` /
``executing`` / ``progress`` / previews of both header layouts / ``executed``, ``execution_success``,
``status``, then — after the history entry is written — ``executing {node: null}``), routed by
``client_id``; it caches identical work, dedupes and renames uploads, and supports
interrupt / queue / free.

Fault injection, for the integration tests: :meth:`refuse_connections`, :meth:`fail_requests`
(500s), :meth:`drop_websockets_after` (mid-run), :meth:`stall` / :meth:`release`, ``slow_view``,
:meth:`restart` (history, queue and counters reset, files kept), ``fail_classes`` (execution
errors) and ``broken_models``.

Run by hand: ``python -m dream_window.testing.comfy_server --port 8189 --step-delay 0.1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gzip
import hashlib
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from dream_window.backends.builtin import BuiltinEngine
from dream_window.backends.comfyui.messages import encode_preview, encode_text
from dream_window.backends.comfyui.validation import FILE_INPUTS, is_canonical_uuid, is_link, validate_graph
from dream_window.testing.comfy_nodes import (
    Interrupted,
    Latent,
    NodeFailure,
    RunContext,
    preview_jpeg,
    resolve_annotated,
    run_node,
)

log = logging.getLogger(__name__)

DEFAULT_MODELS: dict[str, list[str]] = {
    "checkpoints": [
        "corrupt_checkpoint.safetensors",
        "flux1-schnell-fp8.safetensors",
        "sd_xl_turbo_1.0_fp16.safetensors",
        "tiny_sd15.safetensors",
    ],
    "diffusion_models": ["flux1-schnell.safetensors"],
    "text_encoders": ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors"],
    "vae": ["ae.safetensors"],
}
_MODEL_INPUTS = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("VAELoader", "vae_name"): "vae",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("CLIPLoader", "clip_name"): "text_encoders",
}
_FEATURES = {
    "supports_preview_metadata": True,
    "supports_model_type_tags": True,
    "max_upload_size": 104857600,
    "extension": {"manager": {"supports_v4": True}},
    "node_replacements": True,
    "assets": False,
}
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


def recorded_object_info() -> dict[str, Any]:
    """The 886 node schemas recorded from ComfyUI v0.33.0 (packaged, gzipped)."""
    raw = (files("dream_window.testing") / "data" / "object_info.json.gz").read_bytes()
    return json.loads(gzip.decompress(raw))


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    body: Any
    at: float


@dataclass
class _Queued:
    number: int
    prompt_id: str
    graph: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_tuple(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra_data, self.outputs]


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    sid: str
    metadata: bool = False


@dataclass
class Stats:
    """Busy-time accounting for benchmarks: seconds spent executing prompts."""

    busy_s: float = 0.0
    prompts: int = 0
    executed_nodes: int = 0
    first_start: float | None = None
    last_end: float | None = None


class ComfyTestServer:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        root: Path | None = None,
        step_delay: float = 0.0,
        models: dict[str, list[str]] | None = None,
        object_info: dict[str, Any] | None = None,
        broken_models: set[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="comfy-test-")
            root = Path(self._tmp.name)
        self.root = Path(root)
        for d in ("input", "output", "temp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.step_delay = step_delay
        self.models = copy.deepcopy(models or DEFAULT_MODELS)
        self._object_info = object_info or recorded_object_info()
        self.broken_models = set(
            broken_models if broken_models is not None else {"corrupt_checkpoint.safetensors"}
        )
        self.fail_classes: dict[str, str] = {}
        self.slow_view = 0.0
        self.requests: list[RequestRecord] = []
        self.stats = Stats()
        self.engine = BuiltinEngine(offload=False)
        self._runner: web.AppRunner | None = None
        self._sockets: dict[str, _Socket] = {}
        self._fail_next = 0
        self._fail_path: str | None = None
        self._drop_after_steps: int | None = None
        self._stalled = asyncio.Event()
        self._stalled.set()
        self._reset_state()

    # --- state ------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._number = 0
        self._queue: list[_Queued] = []
        self._running: _Queued | None = None
        self._running_client: str | None = None
        self._last_node: str | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._interrupt_flag = False
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._preview_suffixes: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def seen(self, path: str, method: str | None = None) -> list[RequestRecord]:
        """Requests received on ``path`` (``/api`` prefix stripped), in order."""
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    # --- lifecycle and faults -----------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=200 * 1024 * 1024)
        self._routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._worker = asyncio.create_task(self._work(), name="comfy-test-worker")

    async def _stop_listening(self) -> None:
        for s in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await s.ws.close()
        self._sockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await self._stop_listening()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def refuse_connections(self) -> None:
        """Stop listening (connections are refused) until :meth:`accept_connections`; state is kept."""
        await self._stop_listening()

    async def accept_connections(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=200 * 1024 * 1024)
        self._routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()

    async def restart(self) -> None:
        """A process restart: sockets dropped, the running prompt lost, history/queue/counters reset.
        input/ and output/ stay; temp/ is wiped, as ComfyUI's ``cleanup_temp()`` does at start."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await self._stop_listening()
        shutil.rmtree(self.root / "temp", ignore_errors=True)
        (self.root / "temp").mkdir(parents=True, exist_ok=True)
        self._reset_state()
        await self.accept_connections()
        self._worker = asyncio.create_task(self._work(), name="comfy-test-worker")

    def fail_requests(self, count: int, *, path: str | None = None) -> None:
        """The next ``count`` HTTP requests (only those on ``path``, when given) answer 500."""
        self._fail_next = count
        self._fail_path = path

    def drop_websockets_after(self, steps: int) -> None:
        """Close every WebSocket after ``steps`` more sampler steps (once)."""
        self._drop_after_steps = steps

    def stall(self) -> None:
        """Samplers hang before their next step until :meth:`release` (or an interrupt)."""
        self._stalled.clear()

    def release(self) -> None:
        self._stalled.set()

    async def prime_cache(self, graph: dict[str, Any], nodes: list[str]) -> None:
        """Execute ``nodes`` of ``graph`` quietly so later prompts find them cached, as on a server
        that has run them before (for replaying recorded scenarios mid-session)."""
        item = _Queued(-1, f"prime-{uuid.uuid4()}", graph, {}, list(nodes))
        await self._execute(item)
        self.history.pop(item.prompt_id, None)

    # --- HTTP -----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path[4:] if request.path.startswith("/api/") else request.path
        body: Any = None
        if request.method == "POST" and request.content_type == "application/json":
            with contextlib.suppress(Exception):
                body = json.loads(await request.text())
        if path != "/ws":
            self.requests.append(RequestRecord(request.method, path, body, time.monotonic()))
            if self._fail_next > 0 and self._fail_path in (None, path):
                self._fail_next -= 1
                return web.Response(
                    status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
                )
        return await handler(request)

    def _routes(self, app: web.Application) -> None:
        r = [
            web.get("/ws", self._ws),
            web.get("/system_stats", self._system_stats),
            web.get("/object_info", self._object_info_all),
            web.get("/object_info/{node}", self._object_info_one),
            web.get("/prompt", self._prompt_get),
            web.post("/prompt", self._prompt_post),
            web.get("/queue", self._queue_get),
            web.post("/queue", self._queue_post),
            web.get("/history", self._history_all),
            web.get("/history/{pid}", self._history_one),
            web.post("/history", self._history_post),
            web.post("/interrupt", self._interrupt),
            web.post("/free", self._free),
            web.post("/upload/image", self._upload),
            web.get("/view", self._view),
            web.get("/models", self._models),
            web.get("/models/{folder}", self._models_folder),
            web.get("/embeddings", self._embeddings),
            web.get("/features", self._features),
        ]
        app.add_routes(r)
        app.add_routes([web.RouteDef(d.method, "/api" + d.path, d.handler, d.kwargs) for d in r])

    async def _system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "system": {
                    "os": "linux",
                    "comfyui_version": "0.33.0",
                    "python_version": "3",
                    "embedded_python": False,
                    "pytorch_version": "test",
                    "argv": ["dream_window.testing.comfy_server"],
                    "ram_total": 0,
                    "ram_free": 0,
                },
                "devices": [
                    {
                        "name": "cpu",
                        "type": "cpu",
                        "index": None,
                        "vram_total": 0,
                        "vram_free": 0,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        )

    def object_info(self) -> dict[str, Any]:
        """The recorded schemas with this server's model files and input folder filled in."""
        info = self._object_info
        out = dict(info)
        for (node, name), folder in _MODEL_INPUTS.items():
            if node not in out:
                continue
            options = sorted(self.models.get(folder, [])) + (["pixel_space"] if node == "VAELoader" else [])
            out[node] = self._with_options(out[node], name, options)
        top = sorted(p.name for p in (self.root / "input").iterdir() if p.is_file())
        for (node, name), kind in FILE_INPUTS.items():
            if node in out:
                ext = (".latent",) if kind == "latent" else _IMAGE_EXT
                out[node] = self._with_options(out[node], name, [n for n in top if n.lower().endswith(ext)])
        return out

    @staticmethod
    def _with_options(node: dict[str, Any], name: str, options: list[str]) -> dict[str, Any]:
        node = copy.deepcopy(node)
        for section in ("required", "optional"):
            spec = node.get("input", {}).get(section, {}).get(name)
            if spec is None:
                continue
            if isinstance(spec[0], list):
                spec[0] = options
            elif spec[0] == "COMBO":
                spec[1]["options"] = options
        return node

    async def _object_info_all(self, request: web.Request) -> web.Response:
        return web.json_response(self.object_info())

    async def _object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node"]
        info = self.object_info()
        return web.json_response({name: info[name]} if name in info else {})

    def _queue_remaining(self) -> int:
        return len(self._queue) + (1 if self._running is not None else 0)

    async def _prompt_get(self, request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": self._queue_remaining()}})

    def _file_exists(self, kind: str, name: str) -> bool:
        ctx = self._ctx()
        try:
            return resolve_annotated(name, ctx).is_file()
        except NodeFailure:
            return False

    async def _prompt_post(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")

        def bad(type_: str, message: str, details: str = "") -> web.Response:
            return web.json_response(
                {
                    "error": {"type": type_, "message": message, "details": details, "extra_info": {}},
                    "node_errors": {},
                },
                status=400,
            )

        if not isinstance(body, dict) or "prompt" not in body:
            return bad("no_prompt", "No prompt provided", "No prompt provided")
        pid = body.get("prompt_id")
        if pid is not None and not (isinstance(pid, str) and is_canonical_uuid(pid)):
            return bad(
                "invalid_prompt_id",
                "prompt_id must be a valid UUID",
                "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
                "omit it to let the server generate one",
            )
        graph = body["prompt"]
        result = validate_graph(graph, self.object_info(), file_exists=self._file_exists)
        if not result.ok:
            return web.json_response(result.body(), status=400)
        pid = pid or str(uuid.uuid4())
        number = self._number
        self._number += 1
        if body.get("front"):
            number = -number
        extra = dict(body.get("extra_data") or {})
        if body.get("client_id"):
            extra["client_id"] = body["client_id"]
        extra["create_time"] = int(time.time() * 1000)
        item = _Queued(number, pid, graph, extra, result.outputs)
        self._queue.append(item)
        self._queue.sort(key=lambda q: q.number)
        await self._broadcast_status()
        await self._broadcast_status()  # the recording shows two status broadcasts per queued prompt
        self._wake.set()
        return web.json_response({"prompt_id": pid, "number": number, "node_errors": result.node_errors})

    async def _queue_get(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "queue_running": [self._running.as_tuple()] if self._running else [],
                "queue_pending": [q.as_tuple() for q in self._queue],
            }
        )

    async def _queue_post(self, request: web.Request) -> web.Response:
        body = await self._json_or_empty(request)
        if body.get("clear"):
            self._queue.clear()
        for pid in body.get("delete") or []:
            self._queue = [q for q in self._queue if q.prompt_id != pid]
        await self._broadcast_status()
        return web.Response(status=200)

    async def _history_all(self, request: web.Request) -> web.Response:
        items = list(self.history.items())
        max_items = request.query.get("max_items")
        if max_items and max_items.isdigit():
            items = items[-int(max_items) :]
        return web.json_response(dict(items))

    async def _history_one(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _history_post(self, request: web.Request) -> web.Response:
        body = await self._json_or_empty(request)
        if body.get("clear"):
            self.history.clear()
        for pid in body.get("delete") or []:
            self.history.pop(pid, None)
        return web.Response(status=200)

    async def _interrupt(self, request: web.Request) -> web.Response:
        body = await self._json_or_empty(request)
        target = body.get("prompt_id")
        if self._running is not None and (target is None or target == self._running.prompt_id):
            self._interrupt_flag = True
            self._stalled.set()
        return web.Response(status=200)

    async def _free(self, request: web.Request) -> web.Response:
        body = await self._json_or_empty(request)
        if body.get("unload_models") or body.get("free_memory"):
            self._cache.clear()  # the next prompt reloads everything (execution_cached was [])
        return web.Response(status=200)

    @staticmethod
    async def _json_or_empty(request: web.Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.text() or "{}")
        except json.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        image = form.get("image")
        if not isinstance(image, web.FileField):
            return web.Response(status=400)
        kind = str(form.get("type") or "input")
        folder = {
            "input": self.root / "input",
            "temp": self.root / "temp",
            "output": self.root / "output",
        }.get(kind)
        if folder is None:
            return web.Response(status=400)
        subfolder = str(form.get("subfolder") or "")
        overwrite = str(form.get("overwrite") or "").lower() in ("true", "1")
        target = (folder / subfolder).resolve()
        if folder.resolve() != target and folder.resolve() not in target.parents:
            return web.Response(status=400)
        target.mkdir(parents=True, exist_ok=True)
        data = image.file.read()
        filename = Path(image.filename).name
        path = target / filename
        if not overwrite:
            i = 1
            stem, ext = Path(filename).stem, Path(filename).suffix
            while path.exists():
                if hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest():
                    break  # same bytes: the same name, no new file
                filename = f"{stem} ({i}){ext}"
                path = target / filename
                i += 1
        path.write_bytes(data)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        folder = {"input": "input", "temp": "temp", "output": "output"}.get(q.get("type", "output"))
        if folder is None or "filename" not in q:
            return web.Response(status=400)
        base = (self.root / folder).resolve()
        path = (base / q.get("subfolder", "") / q["filename"]).resolve()
        if base not in path.parents or not path.is_file():
            return web.Response(status=404)
        if self.slow_view:
            await asyncio.sleep(self.slow_view)
        ctype = "image/png" if path.suffix == ".png" else "application/octet-stream"
        return web.Response(
            body=path.read_bytes(),
            content_type=ctype,
            headers={"Content-Disposition": f'filename="{path.name}"'},
        )

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(sorted(self.models))

    async def _models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in self.models:
            return web.Response(status=404)
        return web.json_response(sorted(self.models[folder]))

    async def _embeddings(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def _features(self, request: web.Request) -> web.Response:
        return web.json_response(_FEATURES)

    # --- WebSocket ----------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        sock = _Socket(ws, sid)
        self._sockets[sid] = sock  # the same clientId replaces the older socket
        await self._send(
            sock,
            "status",
            {"status": {"exec_info": {"queue_remaining": self._queue_remaining()}}, "sid": sid},
        )
        if self._running_client == sid and self._last_node is not None:
            await self._send(sock, "executing", {"node": self._last_node})
        try:
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and first:
                    with contextlib.suppress(json.JSONDecodeError, AttributeError):
                        data = json.loads(msg.data)
                        if data.get("type") == "feature_flags":
                            sock.metadata = bool((data.get("data") or {}).get("supports_preview_metadata"))
                            await self._send(sock, "feature_flags", dict(_FEATURES))
                first = False
        finally:
            if self._sockets.get(sid) is sock:
                del self._sockets[sid]
        return ws

    async def _send(self, sock: _Socket, type_: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await sock.ws.send_str(encode_text(type_, data))

    async def _send_to(
        self,
        client_id: str | None,
        type_: str,
        data: dict[str, Any],
        *,
        everyone_without_client: bool = False,
    ) -> None:
        if client_id is None:
            if everyone_without_client:  # progress of a prompt without client_id reaches every socket
                for s in list(self._sockets.values()):
                    await self._send(s, type_, data)
            return
        sock = self._sockets.get(client_id)
        if sock is not None:
            await self._send(sock, type_, data)

    async def _broadcast_status(self) -> None:
        for s in list(self._sockets.values()):
            await self._send(
                s, "status", {"status": {"exec_info": {"queue_remaining": self._queue_remaining()}}}
            )

    # --- execution ----------------------------------------------------------------------------

    def _ctx(self, on_step: Any = None) -> RunContext:
        async def nothing(i: int, n: int, latent: Latent | None) -> None:
            return None

        return RunContext(
            self.engine,
            self.root / "input",
            self.root / "output",
            self.root / "temp",
            on_step or nothing,
            self.broken_models,
            self.fail_classes,
            self._preview_suffixes,
        )

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            item = self._queue.pop(0)
            self._running = item
            self._running_client = item.extra_data.get("client_id")
            self._interrupt_flag = False
            t0 = time.perf_counter()
            if self.stats.first_start is None:
                self.stats.first_start = t0
            try:
                await self._execute(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in the test server must not kill it silently
                log.exception("test server: executing %s crashed", item.prompt_id)
            finally:
                self.stats.busy_s += time.perf_counter() - t0
                self.stats.last_end = time.perf_counter()
                self.stats.prompts += 1
                self._running = None
                self._running_client = None
                self._last_node = None

    def _order(
        self, graph: dict[str, Any], outputs: list[str], cached: set[str], info: dict[str, Any]
    ) -> list[str]:
        """The order ComfyUI runs nodes in: pending nodes collected by a stack walk from each output
        (cached nodes left out), then repeatedly the first ready node, preferring output nodes, then
        nodes feeding an output, then nodes two steps before one (its "UX-friendly" pick)."""
        pending: dict[str, None] = {}
        deps: dict[str, set[str]] = {}
        blocking: dict[str, set[str]] = {}
        for out in outputs:
            stack = [out]
            while stack:
                nid = stack.pop()
                if nid in pending:
                    continue
                pending[nid] = None
                deps.setdefault(nid, set())
                blocking.setdefault(nid, set())
                for v in (graph[nid].get("inputs") or {}).values():
                    if is_link(v) and v[0] not in cached:
                        stack.append(v[0])
                        deps[nid].add(v[0])
                        blocking.setdefault(v[0], set()).add(nid)

        def is_output(nid: str) -> bool:
            return bool(info.get(graph[nid]["class_type"], {}).get("output_node"))

        order: list[str] = []
        while pending:
            ready = [n for n in pending if not (deps[n] & pending.keys())]
            pick = next((n for n in ready if is_output(n)), None)
            pick = pick or next((n for n in ready if any(is_output(b) for b in blocking[n])), None)
            pick = pick or next(
                (n for n in ready if any(is_output(c) for b in blocking[n] for c in blocking[b])), None
            )
            pick = pick or ready[0]
            order.append(pick)
            del pending[pick]
        return order

    @staticmethod
    def _needed(graph: dict[str, Any], outputs: list[str]) -> list[str]:
        """Every node the outputs depend on (upstream first)."""
        seen: dict[str, None] = {}

        def visit(nid: str) -> None:
            if nid in seen:
                return
            for v in (graph[nid].get("inputs") or {}).values():
                if is_link(v):
                    visit(v[0])
            seen[nid] = None

        for out in outputs:
            visit(out)
        return list(seen)

    def _signature(self, graph: dict[str, Any], nid: str, memo: dict[str, str]) -> str:
        if nid in memo:
            return memo[nid]
        node = graph[nid]
        parts: list[Any] = [node["class_type"]]
        for k, v in sorted((node.get("inputs") or {}).items()):
            if is_link(v):
                parts.append((k, self._signature(graph, v[0], memo), v[1]))
            else:
                parts.append((k, v))
                if (node["class_type"], k) in FILE_INPUTS:  # IS_CHANGED: the file's content counts
                    with contextlib.suppress(OSError, NodeFailure):
                        parts.append(
                            hashlib.sha256(resolve_annotated(str(v), self._ctx()).read_bytes()).hexdigest()
                        )
        sig = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
        memo[nid] = sig
        return sig

    async def _execute(self, item: _Queued) -> None:
        pid, graph, cid = item.prompt_id, item.graph, item.extra_data.get("client_id")
        preview_method = str(item.extra_data.get("preview_method", "none"))
        previews = preview_method in ("latent2rgb", "taesd", "auto")
        info = self.object_info()
        messages: list[list[Any]] = []

        async def emit(
            type_: str, data: dict[str, Any], *, record: bool = False, broadcast: bool = False
        ) -> None:
            if record:
                messages.append([type_, data])
            await self._send_to(cid, type_, data, everyone_without_client=broadcast)

        def ts() -> int:
            return int(time.time() * 1000)

        # ComfyUI keeps a node object per (id, class) only while consecutive prompts have it: a
        # PreviewImage id missing from this prompt gets a fresh object (and file name suffix) later.
        for nid in list(self._preview_suffixes):
            if graph.get(nid, {}).get("class_type") != "PreviewImage":
                del self._preview_suffixes[nid]
        memo: dict[str, str] = {}
        needed = self._needed(graph, item.outputs)
        sigs = {nid: self._signature(graph, nid, memo) for nid in needed}
        cached = [nid for nid in needed if sigs[nid] in self._cache]
        order = cached + self._order(graph, item.outputs, set(cached), info)
        await emit("execution_start", {"prompt_id": pid, "timestamp": ts()}, record=True)
        await emit("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": ts()}, record=True)
        states: dict[str, dict[str, Any]] = {}
        results: dict[str, tuple[Any, ...]] = {}
        ui_out: dict[str, Any] = {}
        executed: list[str] = []

        async def progress_state() -> None:
            await emit("progress_state", {"prompt_id": pid, "nodes": copy.deepcopy(states)}, broadcast=True)

        def state(nid: str, value: float, maximum: float, st: str) -> None:
            states[nid] = {
                "value": value,
                "max": maximum,
                "state": st,
                "node_id": nid,
                "prompt_id": pid,
                "display_node_id": nid,
                "parent_node_id": None,
                "real_node_id": nid,
            }

        for nid in cached:
            outs, ui = self._cache[sigs[nid]]
            results[nid] = outs
            if ui is not None:
                ui_out[nid] = ui
                await emit("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid})
                state(nid, 1.0, 1.0, "finished")
                await progress_state()

        current = {"node": ""}

        async def on_step(i: int, n: int, latent: Latent | None) -> None:
            await self._stalled.wait()
            if self._interrupt_flag:
                raise Interrupted()
            if self.step_delay:
                await asyncio.sleep(self.step_delay)
            if self._interrupt_flag:
                raise Interrupted()
            nid = current["node"]
            state(nid, float(i), float(n), "running")
            await progress_state()
            sock = self._sockets.get(cid) if cid else None
            frame = None
            if previews and sock is not None:
                image = await asyncio.to_thread(preview_jpeg, self.engine, latent)
                meta = (
                    {
                        "node_id": nid,
                        "prompt_id": pid,
                        "display_node_id": nid,
                        "parent_node_id": None,
                        "real_node_id": nid,
                    }
                    if sock.metadata
                    else None
                )
                frame = encode_preview(image, "image/jpeg", meta=meta)
                if meta is not None:  # type 4 comes before its progress message
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await sock.ws.send_bytes(frame)
                    frame = None
            await emit("progress", {"value": i, "max": n, "prompt_id": pid, "node": nid}, broadcast=True)
            if frame is not None and sock is not None:  # type 1 comes after it
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await sock.ws.send_bytes(frame)
            if self._drop_after_steps is not None:
                self._drop_after_steps -= 1
                if self._drop_after_steps <= 0:
                    self._drop_after_steps = None
                    for s in list(self._sockets.values()):
                        with contextlib.suppress(Exception):
                            await s.ws.close()

        ctx = self._ctx(on_step)
        status_str, completed = "success", True
        try:
            for nid in order:
                if nid in results:
                    continue
                if self._interrupt_flag:
                    raise Interrupted()
                node = graph[nid]
                current["node"] = nid
                self._last_node = nid
                state(nid, 0.0, 1.0, "running")
                await progress_state()
                await emit("executing", {"node": nid, "display_node": nid, "prompt_id": pid})
                inputs = {}
                for k, v in (node.get("inputs") or {}).items():
                    inputs[k] = results[v[0]][v[1]] if is_link(v) else v
                self._fill_defaults(info, node["class_type"], inputs)
                try:
                    outs, ui = await run_node(node["class_type"], inputs, ctx, prompt=graph, node_id=nid)
                except (NodeFailure, Interrupted):
                    raise
                except Exception as exc:  # a node crashed: report like ComfyUI, do not die
                    raise NodeFailure(type(exc).__name__, str(exc)) from exc
                results[nid] = outs
                self._cache[sigs[nid]] = (outs, ui)
                self.stats.executed_nodes += 1
                if ui is not None:
                    ui_out[nid] = ui
                    await emit("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid})
                state(nid, 1.0, 1.0, "finished")
                await progress_state()
                executed.append(nid)
            await emit("execution_success", {"prompt_id": pid, "timestamp": ts()}, record=True)
        except Interrupted:
            status_str, completed = "error", False
            ui_out = {}
            nid = current["node"]
            await emit(
                "execution_interrupted",
                {
                    "prompt_id": pid,
                    "node_id": nid,
                    "node_type": graph[nid]["class_type"] if nid else None,
                    "executed": executed,
                    "timestamp": ts(),
                },
                record=True,
            )
        except NodeFailure as fail:
            status_str, completed = "error", False
            ui_out = {}
            nid = current["node"]
            await emit(
                "execution_error",
                {
                    "prompt_id": pid,
                    "node_id": nid,
                    "node_type": graph[nid]["class_type"],
                    "executed": executed,
                    "exception_message": fail.message,
                    "exception_type": fail.exception_type,
                    "traceback": [],
                    "current_inputs": {},
                    "current_outputs": {},
                    "timestamp": ts(),
                },
                record=True,
            )
        self._running = None
        await self._broadcast_status()
        # History is written only now, so a /history poll right after the terminal message can see {}
        # (the recorded race); executing{node:null} follows it.
        await asyncio.sleep(0)
        self.history[pid] = {
            "prompt": item.as_tuple(),
            "outputs": ui_out,
            "status": {"status_str": status_str, "completed": completed, "messages": messages},
            "meta": {
                nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                for nid in ui_out
            },
        }
        await emit("executing", {"node": None, "prompt_id": pid})

    @staticmethod
    def _fill_defaults(info: dict[str, Any], class_type: str, inputs: dict[str, Any]) -> None:
        spec = info.get(class_type, {}).get("input", {})
        for section in ("required", "optional"):
            for name, s in (spec.get(section) or {}).items():
                if (
                    name not in inputs
                    and isinstance(s, list)
                    and len(s) > 1
                    and isinstance(s[1], dict)
                    and "default" in s[1]
                ):
                    inputs[name] = s[1]["default"]


@contextlib.asynccontextmanager
async def running_comfy_server(**kwargs: Any) -> AsyncIterator[ComfyTestServer]:
    """Start a :class:`ComfyTestServer` on a free loopback port for the ``async with`` body."""
    server = ComfyTestServer(**kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="A ComfyUI-protocol test server backed by the built-in engine."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8189)
    parser.add_argument("--root", type=Path, help="Folder for input/, output/, temp/ (default: a temp dir).")
    parser.add_argument("--step-delay", type=float, default=0.05, help="Seconds per sampler step.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def serve() -> None:
        server = ComfyTestServer(host=args.host, port=args.port, root=args.root, step_delay=args.step_delay)
        await server.start()
        print(f"ComfyUI test server on {server.url} (files in {server.root})", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
