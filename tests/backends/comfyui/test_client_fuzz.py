"""The client against a server that answers nonsense: random shapes, huge bodies, hostile file names.

Property: whatever arrives is either used or refused as one of our errors (a ``ComfyUIError``,
mostly ``ComfyUIProtocolError``); no other exception leaves the client, and no file reference
that could leave the server's folders is downloaded, uploaded or handed on. The HTTP side runs
against a tiny aiohttp server on a loopback port (on a thread) that answers what each example
scripts; the WebSocket side goes through :class:`Watches`, which the socket reader feeds.
"""

from __future__ import annotations

import asyncio
import json
import ntpath
import posixpath
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dream_window.backends.comfyui.client import ComfyUIClient, unsafe_file
from dream_window.backends.comfyui.messages import MessageError, parse_binary, parse_text
from dream_window.backends.comfyui.watches import OutputFile, Watch, Watches
from dream_window.errors import ComfyUIError, ComfyUIProtocolError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
# Keys a ComfyUI body really has, so the random values land where the client looks.
KEYS = st.sampled_from(
    ["prompt_id", "outputs", "status", "messages", "images", "latents", "filename", "subfolder", "type",
     "name", "completed", "status_str", "queue_running", "queue_pending", "node", "data", "value", "max",
     "nodes", "output", "exec_info", "queue_remaining", "image_type"]
)  # fmt: skip
shaped = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS | st.just("p1"), inner, max_size=5),
    max_leaves=25,
)
NASTY = [
    "..",
    ".",
    "../..",
    "/etc",
    "etc/passwd",
    "C:",
    "\\\\srv\\share",
    "a\0b",
    "\n",
    "ok",
    "",
    "x:y",
    "..\\..",
]
names = st.tuples(
    st.lists(st.sampled_from(NASTY) | st.text(max_size=6), max_size=4), st.sampled_from(["/", "\\"])
).map(lambda t: t[1].join(t[0]))


# --- messages: parse, then route ------------------------------------------------------------------


def _watches() -> tuple[Watches, list[tuple[int, int]]]:
    progress: list[tuple[int, int]] = []
    w = Watches("http://fuzz")
    w.add(Watch("p1", on_progress=lambda v, m: progress.append((v, m)), on_preview=lambda _p: None))
    return w, progress


@FUZZ
@given(st.text(max_size=200) | json_values.map(json.dumps))
def test_any_text_frame_parses_or_is_a_protocol_error(text: str) -> None:
    try:
        parse_text(text)
    except MessageError as exc:
        assert isinstance(exc, ComfyUIProtocolError)
    _watches()[0].route_text(text)  # never raises: a bad frame is ignored


@FUZZ
@given(
    st.sampled_from(["status", "progress", "executing", "executed", "execution_cached", "execution_error",
                     "execution_interrupted", "execution_success", "other"]),
    st.dictionaries(KEYS, shaped, max_size=6),
)  # fmt: skip
def test_messages_of_known_types_with_random_fields_are_routed_or_refused(
    kind: str, data: dict[str, Any]
) -> None:
    data = {**data, "prompt_id": "p1"}
    text = json.dumps({"type": kind, "data": data})
    watches, progress = _watches()
    watches.route_text(text)  # never raises: what parses has the types the router reads
    assert all(isinstance(v, int) and isinstance(m, int) for v, m in progress)
    watch = watches.get("p1")
    assert watch is not None
    for files in watch.outputs.values():
        assert all(isinstance(f, OutputFile) for fs in files.values() for f in fs)


def test_deeply_nested_json_is_a_protocol_error() -> None:
    with pytest.raises(MessageError, match="nested too deeply"):
        parse_text("[" * 200_000 + "]" * 200_000)
    meta = b"[" * 200_000
    with pytest.raises(MessageError):
        parse_binary(struct.pack(">II", 4, len(meta)) + meta)


@FUZZ
@given(
    st.binary(max_size=64)
    | st.tuples(st.sampled_from([1, 4, 7]), json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=40))
    .map(lambda t: struct.pack(">II", t[0], len(t[1])) + t[1] + b"\x89PNG")
)  # fmt: skip
def test_any_binary_frame_parses_or_is_a_protocol_error(frame: bytes) -> None:
    try:
        preview = parse_binary(frame)
    except MessageError:
        preview = None
    if preview is not None:
        assert isinstance(preview.mime, str) and preview.prompt_id in (None, *[preview.meta.get("prompt_id")])
        assert preview.prompt_id is None or isinstance(preview.prompt_id, str)
    _watches()[0].route_binary(frame)


# --- file references ------------------------------------------------------------------------------


def _inside(sub: str, name: str) -> bool:
    """Joined under a root by a POSIX or a Windows server, the file stays below that root."""
    for mod, root in ((posixpath, "/srv/comfy"), (ntpath, "C:\\comfy")):
        joined = mod.normpath(mod.join(root, sub, name))
        if not joined.startswith(root + mod.sep) or mod.isabs(sub) or mod.isabs(name):
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(names, names, st.sampled_from(["output", "temp", "input", "../x", "", "output\0"]))
def test_a_file_reference_judged_safe_stays_in_its_folder(sub: str, name: str, kind: str) -> None:
    ref = OutputFile(name, sub, kind)
    if unsafe_file(ref) is None:
        assert _inside(sub, name) and "\0" not in sub + name and kind in ("output", "temp", "input")


@pytest.mark.parametrize(
    ("filename", "subfolder", "kind"),
    [
        ("../../etc/passwd", "", "output"),
        ("passwd", "../../etc", "output"),
        ("passwd", "/etc", "output"),
        ("x.png", "..", "temp"),
        ("x.png", "a/../..", "temp"),
        ("x.png", "..\\..\\Windows", "output"),
        ("x.png", "C:\\Windows", "output"),
        ("x.png\0.txt", "", "output"),
        ("..", "", "output"),
        ("x.png", "", "../output"),
        ("", "", "output"),
    ],
)
async def test_a_hostile_file_reference_is_refused_before_any_request(
    fake: FakeServer, filename: str, subfolder: str, kind: str
) -> None:
    ref = OutputFile(filename, subfolder, kind)
    fake.paths.clear()  # (the server is the module's: other tests' requests are not this one's)
    async with _client(fake) as c:
        with pytest.raises(ComfyUIProtocolError):
            await c.download(ref)
        fake.script("/history/p1", 200, {"p1": {"outputs": {"9": {"images": [{"filename": filename,
                    "subfolder": subfolder, "type": kind}]}}, "status": {"completed": True}}})  # fmt: skip
        with pytest.raises(ComfyUIProtocolError):
            await c.get_output_images("p1")
        fake.script("/upload/image", 200, {"name": filename, "subfolder": subfolder, "type": kind})
        with pytest.raises(ComfyUIProtocolError):
            await c.upload_image(b"png", "in_1.png")
    assert "/view" not in fake.paths  # the refusal came before a URL was built


async def test_a_windows_servers_subfolder_is_accepted(fake: FakeServer) -> None:
    assert unsafe_file(OutputFile("frame_00001_.png", "dream-window\\abcd1234", "output")) is None
    fake.script("/view", 200, b"bytes")
    async with _client(fake) as c:
        assert await c.download(OutputFile("frame_00001_.png", "dream-window/abcd1234", "temp")) == b"bytes"


# --- HTTP answers of any shape --------------------------------------------------------------------


class FakeServer:
    """A loopback aiohttp server on its own thread that answers each path as scripted."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.paths: list[str] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def script(self, path: str, status: int, body: Any, *, chunked: bool = False) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers[path] = (status, raw, {"chunked": "1"} if chunked else {})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        status, body, opts = self.answers.get(request.path, (200, b"{}", {}))
        if opts.get("chunked"):
            resp = web.StreamResponse(status=status)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(0, len(body), 1024):
                await resp.write(body[i : i + 1024])
            await resp.write_eof()
            return resp
        return web.Response(status=status, body=body, content_type="application/json")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> FakeServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    server = FakeServer().start()
    yield server
    server.stop()


class _client:
    """An open client of ``fake`` without its WebSocket (the fake has none): HTTP only."""

    def __init__(self, fake: FakeServer, **kw: Any) -> None:
        self.c = ComfyUIClient(fake.url, max_retries=0, **kw)

    async def __aenter__(self) -> ComfyUIClient:
        import aiohttp

        self.c._session = aiohttp.ClientSession()
        return self.c

    async def __aexit__(self, *exc: object) -> None:
        await self.c.close()
        if self.c._session is not None:
            await self.c._session.close()


async def _call(c: ComfyUIClient, endpoint: str) -> Any:
    if endpoint == "/history/p1":
        return await c.get_output_images("p1", attempts=1)
    if endpoint == "/prompt":
        return await c.queue_prompt({"1": {"class_type": "X", "inputs": {}}}, prompt_id="p1")
    if endpoint == "/queue":
        return await c.get_queue()
    if endpoint == "/system_stats":
        return await c.get_system_stats()
    if endpoint == "/object_info":
        return await c.get_object_info()
    if endpoint == "/upload/image":
        return await c.upload_image(b"png", "in_1.png")
    raise AssertionError(endpoint)


ENDPOINTS = st.sampled_from(
    ["/history/p1", "/prompt", "/queue", "/system_stats", "/object_info", "/upload/image"]
)


@FUZZ
@given(ENDPOINTS, st.sampled_from([200, 400, 404, 500]), shaped | st.binary(max_size=40))
def test_any_answer_is_used_or_refused_as_our_error(
    fake: FakeServer, endpoint: str, status: int, body: Any
) -> None:
    if endpoint == "/history/p1" and isinstance(body, dict) and "p1" not in body:
        body = {"p1": body}  # mostly reach the entry itself
    fake.script(endpoint, status, body)

    async def go() -> None:
        async with _client(fake) as c:
            try:
                result = await _call(c, endpoint)
            except ComfyUIError:
                return
            if endpoint == "/history/p1":
                for refs in result.values():
                    assert all(unsafe_file(r) is None for r in refs)
            elif endpoint == "/upload/image":
                assert unsafe_file(result) is None
            elif endpoint == "/prompt":
                assert isinstance(result, str) and result
            else:
                assert isinstance(result, dict)

    asyncio.run(go())


@FUZZ
@given(shaped)
def test_a_history_entry_of_any_shape_settles_or_is_refused(fake: FakeServer, entry: Any) -> None:
    fake.script("/history/p1", 200, {"p1": entry})
    fake.script("/queue", 200, {"queue_running": [], "queue_pending": []})

    async def go() -> None:
        async with _client(fake) as c:
            watch = c._watches.add(Watch("p1"))
            try:
                await c._settle_from_history(watch)
            except ComfyUIError:
                return

    asyncio.run(go())


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_huge_body_is_refused(fake: FakeServer, chunked: bool) -> None:
    fake.script("/system_stats", 200, {"pad": "x" * 20_000}, chunked=chunked)
    async with _client(fake, max_body=4096) as c:
        with pytest.raises(ComfyUIProtocolError, match="limit of 4096"):
            await c.get_system_stats()
    fake.script("/system_stats", 500, b"e" * 1_000_000)  # an error page is read only in part
    async with _client(fake, max_body=4096) as c:
        with pytest.raises(ComfyUIError, match="HTTP 500"):
            await c.get_system_stats()


async def test_deeply_nested_json_from_http_is_a_protocol_error(fake: FakeServer) -> None:
    fake.script("/queue", 200, b"[" * 200_000 + b"]" * 200_000)
    async with _client(fake) as c:
        with pytest.raises(ComfyUIProtocolError):
            await c.get_queue()


async def test_a_prompt_id_that_is_not_an_id_is_refused_and_withdrawn(fake: FakeServer) -> None:
    fake.script("/prompt", 200, {"prompt_id": {"../": 1}})
    fake.paths.clear()
    async with _client(fake) as c:
        with pytest.raises(ComfyUIProtocolError, match="is not an id"):
            await c.queue_prompt({}, prompt_id="p1")
        assert c.in_flight_ids() == []
    assert "/queue" in fake.paths and "/interrupt" in fake.paths
