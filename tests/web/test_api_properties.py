"""Random bodies against every POST route of a real running viewer: never a 5xx, every error is one
line of JSON, nothing is logged with a traceback, and each answer comes quickly and small.

The dream and its viewer run on their own event loop in a thread (a real aiohttp server on a
loopback port, as tests/web/conftest.py builds it); hypothesis drives them with a blocking client.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dream_window.web.security import MAX_BODY_BYTES
from tests.web.conftest import Dream, make_dream
from tests.web.test_api import RecordingFrameCache

POST_ROUTES = ["pause", "resume", "skip", "prompt", "mode", "like", "dislike"]
# A generous bound: on a busy 2-core box a cut (skip, prompt, mode) waits for the frame in hand.
ANSWER_WITHIN_S = 10.0
MAX_ANSWER_BYTES = 4096


class Recorder(logging.Handler):
    """Every record at ERROR or above, from any logger (aiohttp logs handler crashes as ERROR)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Viewer:
    host: str
    port: int
    errors: Recorder
    answers: list[tuple[str, int]] = field(default_factory=list)

    def post(self, route: str, body: bytes) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=ANSWER_WITHIN_S)
        try:
            conn.request("POST", f"/api/{route}", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type", ""), r.read(MAX_ANSWER_BYTES + 1)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Viewer]:
    """A dream publishing a frame a second, with its viewer, on an event loop of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    errors = Recorder()
    logging.getLogger().addHandler(errors)
    mp = pytest.MonkeyPatch()
    mp.setenv("DREAM_WINDOW_HOME", str(tmp_path_factory.mktemp("dw-home")))

    async def start(tmp: Path) -> Dream:
        d = await make_dream(
            tmp,
            run=True,
            frame_cache=RecordingFrameCache(),
            generation={"frame_interval": 1.0, "cache": {"enabled": True}},
        )
        await d.next_frame(within=60)
        return d

    made: Future[Dream] = asyncio.run_coroutine_threadsafe(start(tmp_path_factory.mktemp("fuzz")), loop)
    dream = made.result(timeout=90)
    url = urlsplit(dream.url)
    assert url.hostname is not None and url.port is not None
    try:
        yield Viewer(url.hostname, url.port, errors)
    finally:
        asyncio.run_coroutine_threadsafe(dream.close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        logging.getLogger().removeHandler(errors)
        mp.undo()


# --- bodies ---------------------------------------------------------------------------------

KEYS = st.sampled_from(["index", "prompt", "mode", "reason", ""]) | st.text(max_size=12)
# Any character, lone surrogates included: json.dumps writes them as \\udXXX escapes.
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=200)
NUMBERS = (
    st.integers(min_value=-(10**300), max_value=10**300)
    | st.integers(min_value=-3, max_value=100)
    | st.floats(allow_nan=True, allow_infinity=True)
)
SCALARS = (
    st.none() | st.booleans() | NUMBERS | ANY_TEXT | st.sampled_from(["img2img", "hybrid", "interpolate"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _nested(depth: int, bracket: str) -> bytes:
    opening, closing = {"[": ("[", "]"), "{": ('{"a":', "}")}[bracket]
    return (opening * depth + "1" + closing * depth).encode()


BODIES = st.one_of(
    # Objects with the keys the routes read, holding anything.
    st.dictionaries(KEYS, JSON_VALUES, max_size=5).map(_dumps),
    # Any JSON value at all: arrays, strings, numbers at the top level.
    JSON_VALUES.map(_dumps),
    # Numbers in text past what json.dumps can write (Python's int limit is 4300 digits).
    st.integers(min_value=1, max_value=6000).map(lambda n: b'{"index": ' + b"9" * n + b"}"),
    st.integers(min_value=1, max_value=400).map(lambda n: b'{"index": -1' + b"0" * n + b"}"),
    st.sampled_from([b'{"index": 1e999}', b'{"index": NaN}', b'{"index": 1.0}', b'{"index": true}']),
    # Nesting deeper than the parser, within the body limit.
    st.integers(min_value=1, max_value=MAX_BODY_BYTES // 6).flatmap(
        lambda n: st.sampled_from([_nested(n, "["), _nested(n, "{")])
    ),
    # Bytes that are no JSON (or no UTF-8) at all.
    st.binary(max_size=2048),
    ANY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
).filter(lambda b: len(b) <= MAX_BODY_BYTES)


@pytest.mark.parametrize("route", POST_ROUTES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_random_bodies_never_break_the_api(viewer: Viewer, route: str, body: bytes) -> None:
    before = len(viewer.errors.records)
    started = time.monotonic()
    status, content_type, answer = viewer.post(route, body)
    assert time.monotonic() - started < ANSWER_WITHIN_S
    assert status < 500, answer[:300]
    assert len(answer) <= MAX_ANSWER_BYTES
    assert content_type.startswith("application/json"), (status, answer[:300])
    if status >= 400:
        error = json.loads(answer)["error"]
        assert isinstance(error, str) and error and "\n" not in error and "Traceback" not in error
    logged = viewer.errors.records[before:]
    assert not logged, [r.getMessage() for r in logged]


def test_a_300_digit_index_is_a_400_naming_the_field(viewer: Viewer) -> None:
    for route in ("like", "dislike"):
        status, _, answer = viewer.post(route, b'{"index": ' + b"9" * 300 + b"}")
        assert status == 400
        error = json.loads(answer)["error"]
        assert error.startswith("index must be a frame number") and len(error) < 200
