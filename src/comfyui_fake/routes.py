"""The fake's HTTP and WebSocket handlers, each answering as recorded from ComfyUI v0.33.0.

Every route is served under ``/api/…`` too. What the recordings fixed (``01_server_info``,
``06_validation_errors``, ``08_interrupt_queue_free``, ``10_history_after_runs``):

* POST /prompt: 200 ``{prompt_id, number, node_errors}``; 400 ``{error, node_errors}``; a body that
  is not JSON (or a handler that crashes) is aiohttp's ``500 text/plain`` page. A client-chosen
  ``prompt_id`` must be a canonical UUID.
* POST /queue, /interrupt, /free and /history answer 200 with an empty body.
* ``GET /history/{unknown}`` and ``GET /object_info/{unknown}`` are ``200 {}``;
  ``GET /models/{unknown}`` is 404 with an empty body.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from comfyui_fake import jobs, protocol, uploads
from comfyui_fake.executor import Executor
from comfyui_fake.faults import Faults
from comfyui_fake.records import Folders, QueueItem
from comfyui_fake.schemas import Schemas
from comfyui_fake.sockets import Socket, SocketHub
from comfyui_fake.validation import is_canonical_uuid, validate_prompt

Handler = Any
Recorder = Callable[[str, str, Any], None]


def _crash() -> web.Response:
    return web.Response(status=500, text=protocol.CRASH_TEXT)


async def _json_or_empty(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.text() or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


class Routes:
    def __init__(
        self,
        *,
        executor: Executor,
        hub: SocketHub,
        faults: Faults,
        schemas: Schemas,
        folders: Folders,
        record: Recorder,
    ) -> None:
        self.executor = executor
        self.hub = hub
        self.faults = faults
        self.schemas = schemas
        self.folders = folders
        self.record = record  # writes down a request for ``server.seen()``

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=200 * 1024 * 1024)
        table = [
            web.get("/ws", self.websocket),
            web.get("/system_stats", self.system_stats),
            web.get("/object_info", self.object_info),
            web.get("/object_info/{node}", self.object_info_node),
            web.get("/prompt", self.prompt_get),
            web.post("/prompt", self.prompt_post),
            web.get("/queue", self.queue_get),
            web.post("/queue", self.queue_post),
            web.get("/history", self.history_all),
            web.get("/history/{pid}", self.history_one),
            web.post("/history", self.history_post),
            web.post("/interrupt", self.interrupt),
            web.post("/free", self.free),
            web.post("/upload/image", self.upload),
            web.get("/view", self.view),
            web.get("/models", self.models),
            web.get("/models/{folder}", self.models_folder),
            web.get("/embeddings", self.embeddings),
            web.get("/features", self.features),
            web.get("/jobs", self.jobs),
        ]
        app.add_routes(table)
        app.add_routes([web.RouteDef(d.method, "/api" + d.path, d.handler, d.kwargs) for d in table])
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Write down every request (``server.seen()``) and let the injected 500s strike."""
        path = request.path[4:] if request.path.startswith("/api/") else request.path
        if path == "/ws":
            return await handler(request)
        body: Any = None
        if request.method == "POST" and request.content_type == "application/json":
            try:
                body = json.loads(await request.text())
            except ValueError:
                body = None
        self.record(request.method, path, body)
        if self.faults.should_fail(path):
            return _crash()
        return await handler(request)

    # --- server information ------------------------------------------------------------------

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(protocol.system_stats())

    async def object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.schemas.object_info())

    async def object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node"]
        info = self.schemas.object_info()
        return web.json_response({name: info[name]} if name in info else {})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(self.schemas.model_folders())

    async def models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in self.schemas.model_folders():
            return web.Response(status=404)
        return web.json_response(sorted(self.schemas.models.get(folder, [])))

    async def embeddings(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def features(self, request: web.Request) -> web.Response:
        return web.json_response(protocol.FEATURES)

    # --- prompts and the queue ---------------------------------------------------------------

    async def prompt_get(self, request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": self.executor.queue_remaining()}})

    async def prompt_post(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError):
            return _crash()
        if not isinstance(body, dict):
            return _crash()
        number = self.executor.take_number(front=bool(body.get("front")), given=body.get("number"))
        if "prompt" not in body:
            return web.json_response(
                protocol.error_body("no_prompt", "No prompt provided", "No prompt provided"), status=400
            )
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        if not is_canonical_uuid(prompt_id):
            return web.json_response(
                protocol.error_body(
                    "invalid_prompt_id",
                    "prompt_id must be a valid UUID",
                    "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
                    "omit it to let the server generate one",
                ),
                status=400,
            )
        graph = body["prompt"]
        try:
            verdict = validate_prompt(graph, self.schemas.object_info(), self.executor.file_exists)
        except Exception:  # ComfyUI's handler would raise too: aiohttp's 500 page
            return _crash()
        if not verdict.accepted:
            return web.json_response(verdict.body(), status=400)
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        extra["create_time"] = protocol.now_ms()
        await self.executor.submit(QueueItem(number, prompt_id, graph, extra, verdict.outputs))
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": verdict.node_errors}
        )

    async def queue_get(self, request: web.Request) -> web.Response:
        return web.json_response(self.executor.queue_snapshot())

    async def queue_post(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        await self.executor.withdraw(clear=bool(body.get("clear")), delete=list(body.get("delete") or []))
        return web.Response(status=200)

    async def interrupt(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        self.executor.interrupt(body.get("prompt_id"))
        return web.Response(status=200)

    async def free(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        if body.get("unload_models") or body.get("free_memory"):
            self.executor.free()
        return web.Response(status=200)

    async def jobs(self, request: web.Request) -> web.Response:
        offset = request.query.get("offset", "0")
        limit = request.query.get("limit")
        return web.json_response(
            jobs.job_list(
                self.executor.history,
                self.executor.running,
                self.executor.pending,
                offset=int(offset) if offset.isdigit() else 0,
                limit=int(limit) if limit and limit.isdigit() else None,
            )
        )

    # --- history -----------------------------------------------------------------------------

    async def history_all(self, request: web.Request) -> web.Response:
        items = list(self.executor.history.items())
        max_items = request.query.get("max_items")
        if max_items and max_items.isdigit():
            items = items[-int(max_items) :]
        return web.json_response(dict(items))

    async def history_one(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        history = self.executor.history
        return web.json_response({pid: history[pid]} if pid in history else {})

    async def history_post(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        if body.get("clear"):
            self.executor.history.clear()
        for pid in body.get("delete") or []:
            self.executor.history.pop(pid, None)
        return web.Response(status=200)

    # --- files -------------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        return await uploads.upload_image(request, self.folders)

    async def view(self, request: web.Request) -> web.Response:
        return await uploads.view(request, self.folders, self.faults)

    # --- WebSocket ---------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Greets with ``status`` (and ``sid``); a reconnect mid-run also hears which node runs.
        A first frame of type ``feature_flags`` is answered with the server's flags and decides
        the preview layout for this socket."""
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        sock = Socket(ws, sid)
        self.hub.add(sock)
        await self.hub.send(sock, "status", protocol.status(self.executor.queue_remaining(), sid))
        node = self.executor.node_on_reconnect(sid)
        if node is not None:
            await self.hub.send(sock, "executing", {"node": node})
        try:
            first = True
            async for msg in ws:
                if first and msg.type == WSMsgType.TEXT:
                    await self._feature_flags(sock, msg.data)
                first = False
        finally:
            self.hub.remove(sock)
        return ws

    async def _feature_flags(self, sock: Socket, text: str) -> None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return
        if isinstance(data, dict) and data.get("type") == "feature_flags":
            flags = data.get("data") or {}
            sock.wants_metadata = bool(isinstance(flags, dict) and flags.get("supports_preview_metadata"))
            await self.hub.send(sock, "feature_flags", dict(protocol.FEATURES))
