"""The viewer's aiohttp application and its lifecycle.

Static files are read from the package into memory once and served from a fixed table, so no
request path ever reaches the file system (no traversal to guard against). Frames are served by
integer id through the control API.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from importlib.resources import files

from aiohttp import web

from dream_window.config import ViewerConfig
from dream_window.dream.service import Dream
from dream_window.errors import DreamWindowError
from dream_window.web.api import ControlApi, error, security_middleware
from dream_window.web.live import LiveHub
from dream_window.web.security import COOKIE, MAX_BODY_BYTES, AccessPolicy, is_loopback, make_policy

log = logging.getLogger(__name__)

STATIC: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
# Everything the page needs is served from here: no CDN, no inline script, works offline.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

APP_HUB = web.AppKey("hub", LiveHub)


def _load_static() -> dict[str, bytes]:
    root = files("dream_window.web") / "static"
    return {name: (root / name).read_bytes() for name in STATIC}


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    # The token may be in the page's URL: never leak it in a Referer.
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    if resp.content_type == "text/html":
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def create_app(controller: Dream, viewer: ViewerConfig, policy: AccessPolicy) -> web.Application:
    app = web.Application(middlewares=[_headers, security_middleware(policy)], client_max_size=MAX_BODY_BYTES)
    hub = LiveHub(controller, crossfade_ms=viewer.crossfade_ms, show_previews=viewer.show_previews)
    app[APP_HUB] = hub
    static = _load_static()

    async def index(request: web.Request) -> web.StreamResponse:
        offered = request.query.get("token")
        if offered is not None and policy.token is not None:
            if not hmac.compare_digest(offered.encode(), policy.token.encode()):
                return error(401, "wrong control token")
            # Trade the URL token for a cookie the page's requests (images, WebSocket) carry by themselves.
            redirect = web.HTTPSeeOther("/")
            redirect.set_cookie(
                COOKIE, policy.token, httponly=True, samesite="Strict", max_age=365 * 86400, path="/"
            )
            raise redirect
        return _static_response(static, "index.html")

    async def static_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in static:
            return error(404, "no such file")
        return _static_response(static, name)

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static_file)
    ControlApi(controller, hub).add_routes(app)

    async def on_startup(app: web.Application) -> None:
        hub.start()

    async def on_shutdown(app: web.Application) -> None:
        await hub.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


def _static_response(static: dict[str, bytes], name: str) -> web.Response:
    resp = web.Response(body=static[name])
    resp.headers["Content-Type"] = STATIC[name]
    resp.headers["Cache-Control"] = "no-cache"  # revalidate: a new version must show after an upgrade
    return resp


class ViewerServer:
    """Runs the app on ``viewer.host:viewer.port`` (port 0 picks a free one) until ``close()``."""

    def __init__(self, controller: Dream, viewer: ViewerConfig) -> None:
        self.controller = controller
        self.viewer = viewer
        self.policy, self.token_created = make_policy(viewer.host, viewer.allowed_origins)
        self.app = create_app(controller, viewer, self.policy)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def hub(self) -> LiveHub:
        return self.app[APP_HUB]

    @property
    def url(self) -> str:
        host = self.viewer.host
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.viewer.host, self.viewer.port, reuse_address=True)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise DreamWindowError(
                f"viewer cannot listen on {self.viewer.host}:{self.viewer.port}: {exc.strerror or exc} "
                "(another dream-window running? set viewer.port or viewer.enabled: false)"
            ) from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def describe(self) -> dict[str, object]:
        return {
            "url": self.url,
            "clients": self.hub.client_count,
            "token_required": self.policy.requires_token,
            "loopback": is_loopback(self.viewer.host),
        }
