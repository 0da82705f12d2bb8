"""The JSON control API. Every route is listed here; the security rules live in security.py.

    GET  /api/status           the controller's status snapshot
    GET  /api/frames/{id}      a published frame, by integer id only (never by a client path)
    GET  /api/live             WebSocket: live events (see live.py)
    POST /api/pause            pause for "user" (409 when already paused for the user)
    POST /api/resume           resume "user" (409 when not paused for the user)
    POST /api/skip             next prompt
    POST /api/prompt           {"prompt": "..."}: dream of this now (400 when empty or too long)
    POST /api/mode             {"mode": "img2img"}: switch modes (400 for an unknown mode)

skip, prompt and mode cut the queue: the next frame published is the first made for the change
(see dream/controller.py). They answer with the state, the prompt on screen (``current_prompt``)
and the one frames are now made for (``next_prompt``), and how long a typed prompt holds.
    POST /api/like|dislike     {"index": N} optional (default: the frame on screen): feeds the cache

Every value a body carries is checked here, before it reaches the controller: strings by type
(their length by the controller), the one integer (``index``) to 1..MAX_FRAME_INDEX, so a
300-digit number is a 400, not a file name the OS refuses. Errors are JSON ``{"error": "..."}``
with a fitting status code: one line, never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard

from aiohttp import web

from dream_window.dream.service import Dream
from dream_window.errors import DreamWindowError, LifecycleError
from dream_window.web.live import LiveHub
from dream_window.web.security import COOKIE, MAX_BODY_BYTES, AccessPolicy

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Frame ids are history indices; 12 digits outlive any dream and keep int() cheap.
FRAME_ROUTE = "/api/frames/{index:[0-9]{1,12}}"
MAX_FRAME_INDEX = 10**12 - 1
# How much of a rejected value an error message repeats.
SHOWN_CHARS = 60
USER_REASON = "user"


MAX_ERROR_CHARS = 300


def error(status: int, message: str) -> web.Response:
    """A JSON error: one line, of readable length, whatever text it was made from."""
    line = " ".join(message.split())
    if len(line) > MAX_ERROR_CHARS:
        line = line[: MAX_ERROR_CHARS - 1] + "…"
    return web.json_response({"error": line}, status=status)


def is_text(value: object) -> TypeGuard[str]:
    """A str that is valid Unicode: JSON lets "\\ud800" through, and a lone surrogate breaks every
    later UTF-8 write (the log file, the frame's PNG label)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(value: object) -> str:
    """``repr(value)`` cut to a readable length (a body may hold 16 KiB of it)."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 64 else "a huge number"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def security_middleware(policy: AccessPolicy) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not policy.host_ok(request.headers.get("Host")):
            return error(403, "unexpected Host header: the viewer only answers to its loopback address")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return error(413, f"request body too large: at most {MAX_BODY_BYTES} bytes")
        guarded = request.path.startswith("/api/")
        if guarded and not policy.token_ok(
            authorization=request.headers.get("Authorization"), cookie=request.cookies.get(COOKIE)
        ):
            return error(
                401,
                "a control token is required: open the viewer URL printed by `dream-window run`, "
                "or send 'Authorization: Bearer <token>'",
            )
        is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
        if (request.method not in ("GET", "HEAD", "OPTIONS") or is_ws) and not policy.origin_ok(
            request.headers.get("Origin"),
            own_origin=own_origin(request),
            sec_fetch_site=request.headers.get("Sec-Fetch-Site"),
        ):
            return error(
                403,
                f"origin {request.headers.get('Origin')!r} is not allowed to control the dream "
                "(add it to viewer.allowed_origins)",
            )
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 413:
                return error(413, f"request body too large: at most {MAX_BODY_BYTES} bytes")
            if exc.status >= 400:
                return error(exc.status, exc.reason)
            raise  # redirects
        except Exception:  # a bug: logged with its traceback, answered in JSON like every error
            log.error("control API: %s %s failed", request.method, request.path, exc_info=True)
            return error(500, "internal error (details in the log)")

    return middleware


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; empty bodies are ``{}``."""
    raw = await request.read()  # bounded by client_max_size
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):  # "[[[[…": 16 KiB nests deeper than the parser
        raise web.HTTPBadRequest(reason="request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(reason=f"request body must be a JSON object, got {type(data).__name__}")
    return data


class ControlApi:
    def __init__(self, controller: Dream, hub: LiveHub) -> None:
        self.controller = controller
        self.hub = hub

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/status", self.status)
        app.router.add_get(FRAME_ROUTE, self.frame)
        app.router.add_get("/api/live", self.hub.handle)
        app.router.add_post("/api/pause", self.pause)
        app.router.add_post("/api/resume", self.resume)
        app.router.add_post("/api/skip", self.skip)
        app.router.add_post("/api/prompt", self.prompt)
        app.router.add_post("/api/mode", self.mode)
        app.router.add_post("/api/like", self.like)
        app.router.add_post("/api/dislike", self.dislike)

    def _state(self) -> dict[str, object]:
        s = self.controller.snapshot()
        keys = ("state", "pause_reasons", "mode", "current_prompt", "next_prompt", "prompt_hold")
        return {k: s.get(k) for k in keys}

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.controller.snapshot(), dumps=lambda o: json.dumps(o, default=str))

    async def frame(self, request: web.Request) -> web.StreamResponse:
        index = int(request.match_info["index"])
        found = self.controller.output.find(index)
        if found is None:
            return error(404, f"frame {index} is not in the history (it may have been pruned)")
        # A numbered frame never changes once written, so the browser may keep it.
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "Content-Type": "image/png"}
        if isinstance(found.source, bytes):
            return web.Response(body=found.source, headers=headers)
        return web.FileResponse(found.source, headers=headers)

    async def pause(self, request: web.Request) -> web.Response:
        await read_json(request)
        try:
            await self.controller.pause(USER_REASON)
        except LifecycleError as exc:
            return error(409, str(exc))
        return web.json_response(self._state())

    async def resume(self, request: web.Request) -> web.Response:
        await read_json(request)
        try:
            await self.controller.resume(USER_REASON)
        except LifecycleError as exc:
            return error(409, str(exc))
        return web.json_response(self._state())

    async def skip(self, request: web.Request) -> web.Response:
        await read_json(request)
        await self.controller.skip()
        return web.json_response(self._state())

    async def prompt(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        text = body.get("prompt")
        if not is_text(text):
            return error(400, 'expected {"prompt": "<text>"}: prompt must be a string of valid Unicode')
        try:
            await self.controller.set_prompt(text)
        except ValueError as exc:
            return error(400, str(exc))
        return web.json_response(self._state())

    async def mode(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        name = body.get("mode")
        if not is_text(name):
            return error(400, 'expected {"mode": "<name>"}: mode must be a string of valid Unicode')
        try:
            await self.controller.set_mode(name)
        except ValueError as exc:
            return error(400, str(exc))
        return web.json_response(self._state())

    async def like(self, request: web.Request) -> web.Response:
        return await self._rate(request, +1)

    async def dislike(self, request: web.Request) -> web.Response:
        return await self._rate(request, -1)

    async def _rate(self, request: web.Request, score: int) -> web.Response:
        body = await read_json(request)
        if not self.controller.config.generation.cache.enabled:
            return error(409, "cache disabled: likes feed the frame cache (generation.cache.enabled)")
        index = body.get("index", self.controller.output.last_index)
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= MAX_FRAME_INDEX:
            return error(400, f"index must be a frame number (1 to {MAX_FRAME_INDEX}), got {shown(index)}")
        found = self.controller.output.find(index)
        if found is None:
            return error(404, f"frame {index} is not in the history (it may have been pruned)")
        prompt = self.hub.frame_prompts.get(index)
        try:
            await self.controller.frame_cache.rate(found.source, score, prompt=prompt)
        except DreamWindowError as exc:
            log.warning("rating frame %d failed: %s", index, exc)
            return error(500, f"could not rate frame {index}: {exc}")
        log.info("frame %d %s", index, "liked" if score > 0 else "disliked")
        return web.json_response({"index": index, "score": score})
