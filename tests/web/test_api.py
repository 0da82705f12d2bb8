"""The control API over real HTTP on a loopback port: routes, errors and the security rules."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dream_window.dream.controller import State
from dream_window.events import FramePublished
from dream_window.web.security import MAX_BODY_BYTES, AccessPolicy, is_loopback, make_policy, token_path
from dream_window.web.server import create_app
from tests.conftest import hang_guard
from tests.web.conftest import DreamFactory, make_dream


async def request(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url, **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else await r.read()
        return r.status, body


# --- routes -------------------------------------------------------------------------------


async def test_status_is_the_controller_snapshot(dreams: DreamFactory) -> None:
    d = await dreams()
    status, body = await request("GET", f"{d.url}/api/status")
    assert status == 200
    assert body["state"] == "starting"
    assert body["backend"] == d.controller.backend.name


async def test_start_viewer_registers_url_and_closer(tmp_path: Path) -> None:
    from dream_window.web import ViewerService

    d = await make_dream(tmp_path, serve=False, services=lambda cfg: [ViewerService(cfg)])
    (viewer,) = d.controller.services
    assert isinstance(viewer, ViewerService)
    await viewer.start(d.controller)
    try:
        url = d.controller.snapshot()["viewer"]["url"]
        assert viewer.server is not None
        assert url == viewer.server.url and url.startswith("http://127.0.0.1:")
        status, body = await request("GET", f"{url}api/status")
        assert status == 200 and body["viewer"]["url"] == url
    finally:
        await viewer.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await request("GET", f"{url}api/status")
    off = d.controller.config.model_copy(
        update={"viewer": d.controller.config.viewer.model_copy(update={"enabled": False})}
    )
    off_viewer = ViewerService(off)
    await off_viewer.start(d.controller)
    assert off_viewer.server is None and off_viewer.describe() is None


async def test_port_in_use_is_logged_and_the_dream_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dream_window.web import ViewerService

    first = await make_dream(tmp_path / "a")
    taken = first.controller.config.viewer.model_copy(update={"port": first.server.port})
    second = await make_dream(
        tmp_path / "b",
        serve=False,
        services=lambda cfg: [ViewerService(cfg.model_copy(update={"viewer": taken}))],
    )
    (viewer,) = second.controller.services
    assert isinstance(viewer, ViewerService)
    try:
        await viewer.start(second.controller)
        assert viewer.server is None
        assert "cannot listen" in caplog.text
        assert "cannot listen" in second.controller.snapshot()["viewer"]["error"]
    finally:
        await first.close()


async def test_pause_resume_skip_prompt(dreams: DreamFactory) -> None:
    d = await dreams(run=True)
    await d.next_frame()
    status, body = await request("POST", f"{d.url}/api/pause")
    assert (status, body["state"], body["pause_reasons"]) == (200, "paused", ["user"])
    assert d.controller.state is State.PAUSED
    status, body = await request("POST", f"{d.url}/api/pause")
    assert status == 409 and "already paused" in body["error"]
    status, body = await request("POST", f"{d.url}/api/resume")
    assert (status, body["state"]) == (200, "running")
    status, body = await request("POST", f"{d.url}/api/resume")
    assert status == 409 and "not paused for it" in body["error"]

    before = d.controller.prompts.current
    status, body = await request("POST", f"{d.url}/api/skip")
    assert status == 200 and body["next_prompt"] != before
    assert body["next_prompt"] == d.controller.prompts.current and body["prompt_hold"] is None
    on_screen = d.controller.on_screen
    assert on_screen is not None and body["current_prompt"] == on_screen.prompt  # the picture's own

    status, body = await request("POST", f"{d.url}/api/prompt", json={"prompt": "  a lighthouse in fog  "})
    assert (status, body["next_prompt"]) == (200, "a lighthouse in fog")
    assert d.controller.prompts.current == "a lighthouse in fog"
    assert body["prompt_hold"]["prompt"] == "a lighthouse in fog"
    assert 599 <= body["prompt_hold"]["remaining_s"] <= 600  # prompts.hold_minutes: 10 by default


async def test_mode_switches_the_running_dream(dreams: DreamFactory) -> None:
    d = await dreams(run=True)
    await d.next_frame()
    status, body = await request("POST", f"{d.url}/api/mode", json={"mode": "img2img"})
    assert (status, body["mode"]) == (200, "img2img")
    assert d.controller.mode.name == "img2img"
    await d.next_frame()
    on_screen = d.controller.on_screen
    assert on_screen is not None and on_screen.mode == "img2img"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"mode": "slideshow"}, "mode must be one of img2img, interpolate, hybrid, got 'slideshow'"),
        ({"name": "img2img"}, 'expected {"mode"'),
        ({"mode": 3}, 'expected {"mode"'),
    ],
)
async def test_bad_mode_is_400_and_changes_nothing(
    dreams: DreamFactory, body: dict[str, object], message: str
) -> None:
    d = await dreams()
    status, answer = await request("POST", f"{d.url}/api/mode", json=body)
    assert status == 400 and message in answer["error"]
    assert d.controller.mode.name == "hybrid"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "   "}, "must not be empty"),
        ({"prompt": "x" * 2001}, "at most 2000"),
        ({"text": "hello"}, 'expected {"prompt"'),
        ({"prompt": 42}, 'expected {"prompt"'),
        ('{"prompt": "a lone surrogate \\ud800"}', "valid Unicode"),  # breaks every UTF-8 write later
        ("not json", "not valid JSON"),
        ([1, 2], "must be a JSON object"),
        ("[" * 10_000, "not valid JSON"),  # nesting deep enough to overflow the parser's recursion
    ],
)
async def test_prompt_bad_input_is_400(dreams: DreamFactory, body: Any, message: str) -> None:
    d = await dreams()
    before = d.controller.prompts.current
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    status, answer = await request("POST", f"{d.url}/api/prompt", **kwargs)
    assert status == 400 and message in answer["error"]
    assert d.controller.prompts.current == before


async def test_frames_by_id(tmp_path: Path) -> None:
    d = await make_dream(tmp_path, run=True)
    try:
        index = await d.next_frame()
        status, body = await request("GET", f"{d.url}/api/frames/{index}")
        assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
        assert body == d.controller.output.path_for(index).read_bytes()
        status, body = await request("GET", f"{d.url}/api/frames/999999")
        assert status == 404 and "not in the history" in body["error"]
    finally:
        await d.close()


async def test_the_newest_frame_is_served_by_number_when_the_history_did_not_keep_it(tmp_path: Path) -> None:
    # A history frame only every hour: after the first, frames are published but not kept.
    d = await make_dream(tmp_path, run=True, generation={"history_interval": 3600})
    try:
        first = await d.next_frame()
        await d.next_frame()
        await d.next_frame()
        await d.controller.pause("user")  # (no newer frame replaces it while we ask)
        newest = d.controller.output.last_index
        assert first == 1 and newest >= 3
        assert d.controller.output.path_for(first).is_file()
        assert not d.controller.output.path_for(newest).exists()
        status, body = await request("GET", f"{d.url}/api/frames/{newest}")
        assert status == 200 and body == d.controller.output.current_path.read_bytes()
        # One published before it and not kept is gone; the kept one is still there.
        status, body = await request("GET", f"{d.url}/api/frames/{newest - 1}")
        assert status == 404 and "not in the history" in body["error"]
        status, body = await request("GET", f"{d.url}/api/frames/{first}")
        assert status == 200 and body == d.controller.output.path_for(first).read_bytes()
    finally:
        await d.close()


class RecordingFrameCache:
    """A hand-written FrameCache that records ratings (the real cache has its own tests)."""

    def __init__(self) -> None:
        self.rated: list[tuple[Path | bytes, int, str | None]] = []

    async def remember(self, frame: Any, path: Path) -> None: ...

    async def pick_injection(self, current: Any) -> None:
        return None

    async def rate(self, frame: Path | bytes, score: int, *, prompt: str | None = None) -> None:
        self.rated.append((frame, score, prompt))


async def test_like_and_dislike_feed_the_cache(dreams: DreamFactory) -> None:
    memory = RecordingFrameCache()
    d = await dreams(run=True, frame_cache=memory, generation={"cache": {"enabled": True}})
    index = await d.next_frame()
    prompt = next(e.prompt for e in d.events if isinstance(e, FramePublished) and e.index == index)
    status, body = await request("POST", f"{d.url}/api/like", json={"index": index})
    assert (status, body) == (200, {"index": index, "score": 1})
    status, _ = await request("POST", f"{d.url}/api/dislike", json={"index": index})
    assert status == 200
    # The frame itself: from memory while it is the newest, else from its history file.
    png = d.controller.output.path_for(index).read_bytes()
    rated = [(f if isinstance(f, bytes) else f.read_bytes(), score, p) for f, score, p in memory.rated]
    assert rated == [(png, 1, prompt), (png, -1, prompt)]
    status, body = await request("POST", f"{d.url}/api/like", json={"index": "7"})
    assert status == 400 and body["error"] == "index must be a frame number (1 to 999999999999), got '7'"
    status, body = await request("POST", f"{d.url}/api/like", json={"index": 999_999})
    assert status == 404
    # Bounded at the API: never a file name too long for the OS (a 500 and a traceback before).
    for huge in ("9" * 300, "1000000000000", "0", "-5"):
        status, body = await request("POST", f"{d.url}/api/dislike", data='{"index": ' + huge + "}")
        assert status == 400 and body["error"].startswith("index must be a frame number (1 to "), huge
        assert len(body["error"]) < 120
    assert len(memory.rated) == 2


async def test_the_newest_frame_can_be_liked_when_the_history_did_not_keep_it(dreams: DreamFactory) -> None:
    # A live cadence keeps one history frame an hour here: the newest frame is only in memory (and
    # current_frame.png), and liking what is on screen must still work; an older unkept one is gone.
    memory = RecordingFrameCache()
    d = await dreams(
        run=True, frame_cache=memory, generation={"cache": {"enabled": True}, "history_interval": 3600}
    )
    for _ in range(3):
        await d.next_frame()
    await d.controller.pause("user")  # (no newer frame replaces it while we ask)
    newest = d.controller.output.newest
    assert newest is not None and not newest.kept and newest.index >= 3
    status, body = await request("POST", f"{d.url}/api/like")  # the frame on screen
    assert (status, body) == (200, {"index": newest.index, "score": 1})
    status, body = await request("POST", f"{d.url}/api/dislike", json={"index": newest.index})
    assert status == 200
    assert [(frame, score) for frame, score, _ in memory.rated] == [(newest.png, 1), (newest.png, -1)]
    status, body = await request("POST", f"{d.url}/api/like", json={"index": newest.index - 1})
    assert status == 404 and "not in the history" in body["error"]
    assert len(memory.rated) == 2


async def test_like_without_cache_is_409(dreams: DreamFactory) -> None:
    d = await dreams()
    status, body = await request("POST", f"{d.url}/api/like")
    assert status == 409 and "cache disabled" in body["error"]


# --- security -----------------------------------------------------------------------------


async def test_get_cannot_change_state(dreams: DreamFactory) -> None:
    d = await dreams(run=True)
    await d.next_frame()
    prompt = d.controller.prompts.current
    for path in ("pause", "resume", "skip", "prompt?prompt=evil", "like", "dislike"):
        status, body = await request("GET", f"{d.url}/api/{path}")
        assert status == 405, path
        assert "error" in body
    assert d.controller.state is State.RUNNING
    assert d.controller.prompts.current == prompt


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1"])
async def test_foreign_origin_refused(dreams: DreamFactory, origin: str) -> None:
    d = await dreams(run=True)
    await d.next_frame()
    status, body = await request("POST", f"{d.url}/api/pause", headers={"Origin": origin})
    assert status == 403 and "not allowed" in body["error"]
    assert d.controller.state is State.RUNNING


async def test_own_and_configured_origins_allowed(dreams: DreamFactory) -> None:
    d = await dreams(viewer={"allowed_origins": ["http://dashboard.local:3000/"]})
    status, _ = await request("POST", f"{d.url}/api/skip", headers={"Origin": d.url})
    assert status == 200
    status, _ = await request("POST", f"{d.url}/api/skip", headers={"Origin": "http://dashboard.local:3000"})
    assert status == 200
    # No Origin at all: a non-browser client on loopback (curl, the CLI, Rainmeter) ...
    status, _ = await request("POST", f"{d.url}/api/skip")
    assert status == 200
    # ... unless the browser itself says the request is cross-site.
    status, _ = await request("POST", f"{d.url}/api/skip", headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403


async def test_websocket_from_foreign_origin_refused(dreams: DreamFactory) -> None:
    d = await dreams()
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(f"{d.url}/api/live", headers={"Origin": "http://evil.example"})
        assert err.value.status == 403
        async with s.ws_connect(f"{d.url}/api/live", headers={"Origin": d.url}) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello" and hello["status"]["state"] == "starting"


async def test_dns_rebinding_host_refused(dreams: DreamFactory) -> None:
    d = await dreams()
    status, body = await request("GET", f"{d.url}/api/status", headers={"Host": "attacker.example:8765"})
    assert status == 403 and "Host" in body["error"]
    status, _ = await request("GET", f"{d.url}/api/status", headers={"Host": f"localhost:{d.server.port}"})
    assert status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2fserver.py",
        "/static/%2e%2e%2fserver.py",
        "/static/server.py",
        "/static/../server.py",
        "/api/frames/../status.json",
        "/api/frames/..%2fstatus.json",
        "/api/frames/-1",
        "/api/frames/1e3",
        "/api/frames/0x10",
        "/api/frames/1234567890123",
        "/api/frames/%2e%2e%2f%2e%2e%2fconfig.yaml",
        "/../config.yaml",
    ],
)
async def test_traversal_refused(dreams: DreamFactory, path: str) -> None:
    d = await dreams()
    (d.controller.output.dir / "status.json").write_text('{"secret": true}', encoding="utf-8")
    async with aiohttp.ClientSession() as s, s.get(f"{d.url}{path}", allow_redirects=False) as r:
        body = await r.read()
    assert r.status in (400, 403, 404), (path, r.status)
    assert b"secret" not in body and b"import" not in body and b"root:" not in body


async def test_static_files_are_served_offline(dreams: DreamFactory) -> None:
    d = await dreams()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{d.url}/") as r:
            html = await r.text()
            assert r.status == 200 and "script-src 'self'" in r.headers["Content-Security-Policy"]
        for name in ("app.js", "style.css", "icon.svg"):
            async with s.get(f"{d.url}/static/{name}") as r:
                assert r.status == 200, name
                assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "http://" not in html and "https://" not in html  # no CDN


async def test_oversized_body_refused(dreams: DreamFactory) -> None:
    d = await dreams()
    before = d.controller.prompts.current
    big = {"prompt": "x" * (MAX_BODY_BYTES + 10)}
    status, body = await request("POST", f"{d.url}/api/prompt", json=big)
    assert status == 413 and "too large" in body["error"]

    async def chunked() -> Any:  # no Content-Length: refused while reading
        for _ in range(8):
            yield b"x" * 4096

    status, body = await request("POST", f"{d.url}/api/prompt", data=chunked())
    assert status == 413
    assert d.controller.prompts.current == before


# --- the token, off loopback --------------------------------------------------------------


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "10.0.0.2", "example.com", ""]))


def test_token_generated_once_owner_only(dream_home: Path) -> None:
    policy, created = make_policy("0.0.0.0", [])
    assert created and policy.requires_token and len(policy.token or "") >= 40
    assert token_path().parent == dream_home
    assert token_path().read_text().strip() == policy.token
    if os.name == "posix":
        assert stat.S_IMODE(token_path().stat().st_mode) == 0o600
    again, created_again = make_policy("192.168.1.5", [])
    assert (again.token, created_again) == (policy.token, False)
    loop_policy, _ = make_policy("127.0.0.1", [])
    assert not loop_policy.requires_token


async def test_token_required_off_loopback(tmp_path: Path, unused_tcp_port: int) -> None:
    """The policy a non-loopback bind gets, served on loopback so the test talks only to 127.0.0.1."""
    d = await make_dream(tmp_path, serve=False)
    policy, _ = make_policy("0.0.0.0", [])
    viewer = d.controller.config.viewer
    runner = web.AppRunner(create_app(d.controller, viewer, policy))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        for method, path in (("GET", "/api/status"), ("POST", "/api/pause"), ("GET", "/api/frames/1")):
            status, body = await request(method, base + path)
            assert status == 401 and "token" in body["error"], path
            status, _ = await request(method, base + path, headers={"Authorization": "Bearer wrong"})
            assert status == 401
        assert d.controller.pause_reasons == []
        auth = {"Authorization": f"Bearer {policy.token}"}
        status, body = await request("GET", base + "/api/status", headers=auth)
        assert status == 200 and body["state"] == "starting"
        status, _ = await request("POST", base + "/api/pause", headers=auth)
        assert status == 200 and d.controller.pause_reasons == ["user"]
        # Off loopback, any Host name is fine (the token is the guard), but Origin rules still hold.
        status, _ = await request(
            "POST", base + "/api/skip", headers={**auth, "Origin": "http://evil.example"}
        )
        assert status == 403
        # The page itself loads without the token (it holds no secret) and trades ?token= for a cookie.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:  # unsafe: IP host
            async with s.get(base + "/") as r:
                assert r.status == 200
            async with s.get(base + "/?token=wrong", allow_redirects=False) as r:
                assert r.status == 401
            async with s.get(base + f"/?token={policy.token}", allow_redirects=False) as r:
                assert r.status == 303
                cookie = r.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            async with s.get(base + "/api/status") as r:  # the session now carries the cookie
                assert r.status == 200
    finally:
        await runner.cleanup()
        await d.close()


def test_policy_origin_rules() -> None:
    p = AccessPolicy(token=None, allowed_origins=frozenset({"http://tv.local:8080"}))
    own = "http://127.0.0.1:8765"
    assert p.origin_ok("http://127.0.0.1:8765", own_origin=own)
    assert p.origin_ok("http://tv.local:8080", own_origin=own)
    assert not p.origin_ok("http://127.0.0.1:8766", own_origin=own)
    assert not p.origin_ok("null", own_origin=own)
    assert p.origin_ok(None, own_origin=own)
    assert not p.origin_ok(None, own_origin=own, sec_fetch_site="cross-site")


async def test_live_pushes_frames_and_state(dreams: DreamFactory) -> None:
    d = await dreams(run=True)
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{d.url}/api/live") as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        seen: dict[str, dict[str, Any]] = {}
        while "frame" not in seen:
            msg = await hang_guard(ws.receive_json(), 10)
            seen.setdefault(msg["type"], msg)
        await request("POST", f"{d.url}/api/pause")
        while "state" not in seen:
            msg = await hang_guard(ws.receive_json(), 10)
            seen.setdefault(msg["type"], msg)
    frame = seen["frame"]
    assert frame["url"] == f"/api/frames/{frame['index']}" and "path" not in frame
    assert seen["state"]["state"] == "paused" and seen["state"]["status"]["pause_reasons"] == ["user"]
