"""ComfyUIClient: one ComfyUI server over HTTP and one long-lived WebSocket (aiohttp, async).

Lifecycle ``CLOSED → OPEN → CLOSED``. ``open()`` checks the server answers (fast: a refused
connection fails in well under a second) and starts a reader task that owns the WebSocket: it
reconnects with the same ``clientId`` after a drop (ComfyUI then re-sends ``executing`` for the
node in progress) and routes every message to the watch of the prompt it belongs to.

Completion, per the recording: a prompt is finished at ``executing {node: null}`` for its id, which
comes after ``execution_success`` / ``execution_error`` / ``execution_interrupted`` and after its
history entry is written. Outputs are taken from the ``executed`` messages (no /history round trip
on the hot path); when the socket dropped or stayed silent, /history is polled instead, tolerating
the recorded race where it is briefly ``{}``.

Every failure leaves this module as one of our exceptions: network errors and 5xx are retried with
exponential backoff and jitter, then raised as ``ComfyUIUnavailable``; a 400 on /prompt is
``WorkflowRejected`` with the node errors rendered readably; a failed or interrupted prompt is
``ExecutionFailed``; a prompt past its time limit is interrupted and raised as ``ComfyUITimeout``.

What the server says is checked before it is used: a body of the wrong shape or larger than
``max_body``, or a file reference that would leave the server's folders (``../``, an absolute
path, a NUL byte, an unknown folder type) is ``ComfyUIProtocolError``, raised before any URL is
built from it. Downloaded bytes are kept in memory and decoded there: no name the server sends is
ever used as a local path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import aiohttp
import tenacity

from dream_window.backends.comfyui.duty import DutyCycle
from dream_window.backends.comfyui.event_socket import EventSocket
from dream_window.backends.comfyui.reasons import plain_reason
from dream_window.backends.comfyui.validation import render_error
from dream_window.backends.comfyui.watches import (
    OutputFile,
    PreviewFn,
    ProgressFn,
    PromptResult,
    Watch,
    Watches,
    apply_history,
    parse_outputs,
    result_of,
)
from dream_window.clock import Clock, SystemClock
from dream_window.errors import (
    ComfyUIError,
    ComfyUIProtocolError,
    ComfyUITimeout,
    ComfyUIUnavailable,
    ExecutionFailed,
    LifecycleError,
    WorkflowRejected,
)

log = logging.getLogger(__name__)

# How long a watch waits in silence before it asks /history (covers lost messages and a dead socket).
_QUIET_POLL_S = 5.0
_DISCONNECTED_POLL_S = 0.5
_UNREACHABLE_POLLS = 4
# The largest body read from the server (object_info of a big install is tens of MB; a frame less).
MAX_BODY = 256 * 1024 * 1024
# Of an error response, this much is read (it is shown, shortened, in the error).
_ERROR_BODY = 4096
# The folders ComfyUI serves files from (the ``type`` of a file reference).
FILE_TYPES = frozenset({"output", "temp", "input"})


class ClientState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"


class ComfyUIClient:
    """One server. ``session`` and ``clock`` are injectable; ``client_id`` is ours for the socket and
    every prompt (execution messages reach only the socket whose clientId matches)."""

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        client_id: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        request_timeout: float = 30.0,
        connect_timeout: float = 3.0,
        max_retries: int = 4,
        backoff_base: float = 0.25,
        preview_metadata: bool = True,
        max_body: int = MAX_BODY,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._max_body = max_body
        self.client_id = client_id or str(uuid.uuid4())
        self._session = session
        self._own_session = session is None
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self._connect_timeout_s = connect_timeout
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._preview_metadata = preview_metadata
        self.state = ClientState.CLOSED
        self._reader: asyncio.Task[None] | None = None
        # The GPU time our prompts took on this server over the last minute (status.json).
        self.duty = DutyCycle(self._clock)
        self._watches = Watches(self.base_url, duty=self.duty)
        self._object_info: dict[str, Any] | None = None
        self._up: bool | None = None
        self._socket: EventSocket | None = None
        # The socket's message count when a prompt last finished unheard (None: it carries messages).
        self._silent_mark: int | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Check the server answers, then keep a WebSocket to it. Raises ComfyUIUnavailable fast."""
        if self.state is ClientState.OPEN:
            raise LifecycleError(f"client for {self.base_url} is already open")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            await self._request("GET", "/system_stats", retries=0)
        except BaseException:
            # A client that never opened owns nothing afterwards: no session left for the GC to warn about.
            if self._own_session and self._session is not None:
                await self._session.close()
                self._session = None
            raise
        self.state = ClientState.OPEN
        self._socket = EventSocket(
            self._session,
            self.base_url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}",
            self._watches,
            clock=self._clock,
            rng=self._rng,
            preview_metadata=self._preview_metadata,
        )
        self._reader = asyncio.create_task(self._socket.run(), name=f"comfyui-ws {self.base_url}")
        if not await _wait_event(self._socket.connected, self._timeout.sock_connect or 3.0):
            log.warning("ComfyUI at %s: WebSocket not up yet; progress will follow when it is", self.base_url)

    async def close(self) -> None:
        self.state = ClientState.CLOSED
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._socket is not None:
            await self._socket.close()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def in_flight_ids(self) -> list[str]:
        """Our prompts on this server that have not finished (queued or running)."""
        return self._watches.ids()

    @property
    def queue_remaining(self) -> int:
        """The server's queue length as it last reported it over the WebSocket."""
        return self._watches.queue_remaining

    @property
    def connected(self) -> bool:
        return self._socket is not None and self._socket.connected.is_set()

    @property
    def ws_connects(self) -> int:
        """How often the WebSocket connected (reconnects included)."""
        return self._socket.connects if self._socket is not None else 0

    # --- HTTP ---------------------------------------------------------------------------------

    def _mark(self, up: bool, why: str = "") -> None:
        if up != self._up:
            if up and self._up is False:
                log.info("ComfyUI at %s is reachable again", self.base_url)
            elif not up and self._up is True:
                log.warning("ComfyUI at %s unreachable: %s", self.base_url, why)
            elif not up:  # never reached yet: whoever asked reports it (one line, not three)
                log.debug("ComfyUI at %s unreachable: %s", self.base_url, why)
            self._up = up

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        expect: str = "json",
        retries: int | None = None,
    ) -> Any:
        if self._session is None:
            raise LifecycleError(f"client for {self.base_url} is not open")
        retries = self._max_retries if retries is None else retries

        def backoff(state: tenacity.RetryCallState) -> float:
            # Exponential with jitter from our own (injectable) RNG: tests replay it exactly.
            return float(self._backoff_base * 2 ** (state.attempt_number - 1) * (0.5 + self._rng.random()))

        def note_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.debug(
                "%s %s failed (%s); retry %d in %.2fs",
                method,
                path,
                plain_reason(exc) if exc is not None else "?",
                state.attempt_number,
                state.upcoming_sleep,
            )

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(retries + 1),
            wait=backoff,
            retry=tenacity.retry_if_exception_type(_TRANSIENT),
            sleep=self._clock.sleep,
            before_sleep=note_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._request_once(method, path, json_body, data, params, expect)
        except _TRANSIENT as exc:
            why = plain_reason(exc, self._connect_timeout_s)
            self._mark(False, why)
            raise ComfyUIUnavailable(
                f"ComfyUI at {self.base_url}: {method} {path} failed: {why}", server=self.base_url, reason=why
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover

    async def _request_once(
        self,
        method: str,
        path: str,
        json_body: Any,
        data: Any,
        params: Mapping[str, str] | None,
        expect: str,
    ) -> Any:
        """One attempt. Transient failures (connection, 5xx) raise one of ``_TRANSIENT`` for the
        retry loop; everything else is mapped to our errors here."""
        assert self._session is not None
        url = self.base_url + path
        try:
            body = data() if callable(data) else data  # multipart bodies cannot be sent twice
            async with self._session.request(
                method, url, json=json_body, data=body, params=params, timeout=self._timeout
            ) as resp:
                if resp.status >= 500:
                    text = (await resp.content.read(_ERROR_BODY)).decode("utf-8", "replace")[:200]
                    raise _Retryable(f"HTTP {resp.status} from {method} {path}: {text.strip()}")
                if resp.status == 400 and path == "/prompt":
                    raw = _json(await self._read(resp))
                    raise _Rejected(raw if isinstance(raw, dict) else {})
                if resp.status == 404:
                    raise ComfyUIError(f"{method} {path}: not found (404)", server=self.base_url)
                if resp.status >= 400:
                    text = (await resp.content.read(_ERROR_BODY)).decode("utf-8", "replace")[:300]
                    raise ComfyUIError(f"{method} {path}: HTTP {resp.status}: {text}", server=self.base_url)
                self._mark(True)
                body = await self._read(resp)
                if expect == "bytes":
                    return body
                if expect == "empty":
                    return None
                return _json(body)
        except _Rejected as rej:
            self._mark(True)
            raise self._rejection(rej.body) from None
        except _TRANSIENT:
            raise
        except (aiohttp.ClientError, ValueError, RecursionError) as exc:
            # ValueError: not JSON, or not UTF-8; RecursionError: JSON nested past the parser's depth.
            raise self._bad(f"{method} {path}", f"bad response: {exc}") from exc

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, refused past ``max_body`` (said up front, or found out while reading)."""
        limit = self._max_body
        if resp.content_length is not None and resp.content_length > limit:
            raise ValueError(f"body of {resp.content_length} bytes, over the limit of {limit}")
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(1 << 16):
            buf += chunk
            if len(buf) > limit:
                raise ValueError(f"body over the limit of {limit} bytes")
        return bytes(buf)

    def _bad(self, what: str, why: str) -> ComfyUIProtocolError:
        return ComfyUIProtocolError(f"ComfyUI at {self.base_url}: {what}: {why}", server=self.base_url)

    def _mapping(self, value: Any, what: str) -> dict[str, Any]:
        """``value`` when it is a JSON object; a protocol error naming ``what`` otherwise."""
        if not isinstance(value, dict):
            raise self._bad(what, f"expected a JSON object, got {type(value).__name__}")
        return value

    def checked_file(self, ref: OutputFile, what: str = "file reference") -> OutputFile:
        """``ref`` when it names a file inside one of the server's folders; a protocol error for a
        name that would leave them, before any URL or graph input is built from it."""
        why = unsafe_file(ref)
        if why is not None:
            raise self._bad(what, f"{why}: {ref.subfolder!r} / {ref.filename!r} [{ref.type!r}]")
        return ref

    def _checked_result(self, result: PromptResult) -> PromptResult:
        for node in result.outputs.values():
            for files in node.values():
                for ref in files:
                    self.checked_file(ref, f"outputs of prompt {result.prompt_id}")
        return result

    def _rejection(self, body: Mapping[str, Any]) -> WorkflowRejected:
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        node_errors = body.get("node_errors") if isinstance(body.get("node_errors"), dict) else {}
        text = render_error(error, node_errors or {}, self._object_info)
        return WorkflowRejected(
            f"ComfyUI at {self.base_url} rejected the workflow: {text}",
            server=self.base_url,
            error=error,
            node_errors=node_errors,
        )

    async def get_system_stats(self) -> dict[str, Any]:
        return self._mapping(await self._request("GET", "/system_stats"), "GET /system_stats")

    async def get_queue(self) -> dict[str, Any]:
        queue = self._mapping(await self._request("GET", "/queue"), "GET /queue")
        for key in ("queue_running", "queue_pending"):
            if not isinstance(queue.get(key, []), list):
                raise self._bad("GET /queue", f"{key} is not a list")
        return queue

    async def get_object_info(self, *, refresh: bool = False) -> dict[str, Any]:
        """All node schemas; cached for this connection (model lists change only when files do)."""
        if self._object_info is None or refresh:
            self._object_info = self._mapping(await self._request("GET", "/object_info"), "GET /object_info")
        return self._object_info

    async def queue_prompt(
        self,
        graph: Mapping[str, Any],
        *,
        prompt_id: str | None = None,
        extra_data: Mapping[str, Any] | None = None,
        on_progress: ProgressFn | None = None,
        on_preview: PreviewFn | None = None,
        front: bool = False,
    ) -> str:
        """Queue ``graph`` under our client_id. The watch is registered before the POST so no message
        can arrive unrouted. ``front`` puts it ahead of everything pending (ComfyUI's ``front``)."""
        pid = prompt_id or str(uuid.uuid4())
        self._watches.add(Watch(pid, on_progress, on_preview))
        body: dict[str, Any] = {"prompt": graph, "client_id": self.client_id, "prompt_id": pid}
        if extra_data:
            body["extra_data"] = dict(extra_data)
        if front:
            body["front"] = True
        try:
            resp = self._mapping(await self._request("POST", "/prompt", json_body=body), "POST /prompt")
            queued = resp.get("prompt_id")
            if queued is not None and not (isinstance(queued, str) and queued):
                raise self._bad("POST /prompt", f"prompt_id {str(queued)[:80]!r} is not an id")
        except ComfyUIProtocolError:
            self._watches.pop(pid)
            await self.withdraw([pid])  # it may have been queued all the same
            raise
        except BaseException:
            self._watches.pop(pid)
            raise
        if queued is not None and queued != pid:  # an older server
            self._watches.rename(pid, queued)
            pid = queued
        return pid

    async def wait_for_completion(self, prompt_id: str, *, timeout: float) -> PromptResult:  # noqa: ASYNC109 (a deadline that also interrupts the prompt)
        """Wait until ``prompt_id`` is finished; interrupt it and raise ComfyUITimeout past ``timeout``."""
        watch = self._watches.get(prompt_id) or self._watches.add(Watch(prompt_id))
        deadline = self._clock.monotonic() + timeout
        try:
            while not watch.done:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    await self._timed_out(prompt_id, timeout)
                poll = self.quiet_poll_s if not watch.reconnected else _DISCONNECTED_POLL_S
                watch.wake.clear()
                if await _wait_event(watch.wake, min(poll, remaining)):
                    self._heard()
                    continue
                # Quiet: messages may have been lost (socket dropped) or never sent (no socket).
                if await self._settle_from_history(watch):
                    self._settled_in_silence()
                    break
            return self._checked_result(result_of(watch, self.base_url))
        finally:
            self._watches.pop(prompt_id)

    @property
    def quiet_poll_s(self) -> float:
        """How long a watch waits in silence before it asks /history: long while the WebSocket
        carries messages, short while it is down or open but silent."""
        if not self.connected or self._socket is None:
            return _DISCONNECTED_POLL_S
        mark = self._silent_mark
        return _DISCONNECTED_POLL_S if mark is not None and self._socket.received == mark else _QUIET_POLL_S

    def _settled_in_silence(self) -> None:
        """A prompt finished without a word on a socket that claims to be up: it is open but
        silent (a stuck proxy, a half-dead connection). Until it carries anything again, follow
        prompts through /history at the short interval instead of 5 s per frame."""
        if not self.connected or self._socket is None:
            return
        if self._silent_mark is None:
            log.warning(
                "ComfyUI at %s: the WebSocket is open but silent; following prompts through /history",
                self.base_url,
            )
        self._silent_mark = self._socket.received

    def _heard(self) -> None:
        if (
            self._silent_mark is not None
            and self._socket is not None
            and self._socket.received != self._silent_mark
        ):
            self._silent_mark = None
            log.info("ComfyUI at %s: the WebSocket carries messages again", self.base_url)

    async def _timed_out(self, prompt_id: str, timeout: float) -> None:  # noqa: ASYNC109 (a deadline that also interrupts the prompt)
        await self.withdraw([prompt_id])  # running: interrupted; still queued: deleted (it would run later)
        raise ComfyUITimeout(
            f"ComfyUI at {self.base_url}: prompt {prompt_id} ran past {timeout:g}s; interrupted",
            server=self.base_url,
            prompt_id=prompt_id,
        )

    async def _settle_from_history(self, watch: Watch) -> bool:
        try:
            entry = await self.get_history(watch.prompt_id, retries=0)
        except ComfyUIUnavailable:
            # Unreachable for several polls in a row: give the work back so it can go elsewhere
            # instead of waiting out the generation timeout.
            watch.unreachable += 1
            if watch.unreachable >= _UNREACHABLE_POLLS:
                raise
            return False
        watch.unreachable = 0
        if entry:
            return apply_history(watch, entry)
        # Neither finished nor queued (twice, to step over the moment between the two): the
        # server lost it, e.g. it restarted. Waiting longer would only run into the timeout.
        try:
            queue = await self.get_queue()
        except ComfyUIError:
            return False
        listed = {
            str(item[1])
            for key in ("queue_running", "queue_pending")
            for item in queue.get(key, [])  # lists: get_queue checked
            if isinstance(item, list) and len(item) > 1
        }
        watch.missing = 0 if watch.prompt_id in listed else watch.missing + 1
        if watch.missing >= 2:
            raise ExecutionFailed(
                f"ComfyUI at {self.base_url} lost prompt {watch.prompt_id} "
                "(the server restarted or dropped it)",
                server=self.base_url,
                prompt_id=watch.prompt_id,
            )
        return False

    async def run(
        self,
        graph: Mapping[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 - a deadline for the whole prompt, enforced with an interrupt
        extra_data: Mapping[str, Any] | None = None,
        on_progress: ProgressFn | None = None,
        on_preview: PreviewFn | None = None,
    ) -> PromptResult:
        pid = await self.queue_prompt(
            graph, extra_data=extra_data, on_progress=on_progress, on_preview=on_preview
        )
        return await self.wait_for_completion(pid, timeout=timeout)

    async def get_history(self, prompt_id: str, *, retries: int | None = None) -> dict[str, Any]:
        """The history entry of ``prompt_id`` ({} while it has none), its shape checked: what
        :func:`apply_history` reads has the types it expects."""
        what = f"GET /history/{prompt_id}"
        data = await self._request("GET", f"/history/{prompt_id}", retries=retries)
        entry = self._mapping(data, what).get(prompt_id) if data else None
        if not entry:
            return {}
        entry = self._mapping(entry, what)
        outputs = entry.get("outputs") or {}
        if not isinstance(outputs, dict) or not all(isinstance(v, dict) for v in outputs.values()):
            raise self._bad(what, "outputs is not an object of objects")
        status = entry.get("status") or {}
        if not isinstance(status, dict):
            raise self._bad(what, "status is not an object")
        messages = status.get("messages") or []
        if not isinstance(messages, list) or not all(
            isinstance(m, list | tuple) and len(m) == 2 and isinstance(m[0], str) and isinstance(m[1], dict)
            for m in messages
        ):
            raise self._bad(what, "status.messages is not a list of [event, data] pairs")
        return entry

    async def get_output_images(self, prompt_id: str, *, attempts: int = 6) -> dict[str, list[OutputFile]]:
        """Images per output node from /history, waiting out the recorded race (briefly ``{}``)."""
        for i in range(attempts):
            entry = await self.get_history(prompt_id)
            if entry:
                return {
                    nid: [
                        self.checked_file(ref, f"outputs of prompt {prompt_id}")
                        for ref in parse_outputs(raw).get("images", [])
                    ]
                    for nid, raw in (entry.get("outputs") or {}).items()
                }
            await self._clock.sleep(0.05 * 2**i)
        raise ComfyUIError(
            f"ComfyUI at {self.base_url}: no history for prompt {prompt_id}", server=self.base_url
        )

    async def download(self, ref: OutputFile) -> bytes:
        """The file's bytes, in memory (the caller decodes them; nothing is written from here)."""
        self.checked_file(ref, "download")
        return await self._request(
            "GET",
            "/view",
            expect="bytes",
            params={"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type},
        )

    async def upload_image(
        self,
        data: bytes,
        name: str,
        *,
        overwrite: bool = True,
        kind: str = "input",
        subfolder: str = "",
        mime: str = "image/png",
    ) -> OutputFile:
        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("image", data, filename=name, content_type=mime)
            f.add_field("overwrite", "true" if overwrite else "false")
            f.add_field("type", kind)
            if subfolder:
                f.add_field("subfolder", subfolder)
            return f

        what = "POST /upload/image"
        resp = self._mapping(await self._request("POST", "/upload/image", data=form), what)
        stored, sub, folder = resp.get("name"), resp.get("subfolder", ""), resp.get("type", kind)
        if not (isinstance(stored, str) and isinstance(sub, str) and isinstance(folder, str)):
            raise self._bad(what, f"expected name, subfolder and type as strings, got {str(resp)[:200]}")
        return self.checked_file(OutputFile(stored, sub, folder), what)

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt ``prompt_id`` if it is running (a silent no-op otherwise), or whatever runs."""
        await self._request(
            "POST", "/interrupt", json_body={"prompt_id": prompt_id} if prompt_id else None, expect="empty"
        )

    async def free(self, *, unload_models: bool = True, free_memory: bool = True) -> None:
        await self._request(
            "POST",
            "/free",
            json_body={"unload_models": unload_models, "free_memory": free_memory},
            expect="empty",
        )

    async def delete_queued(self, prompt_ids: list[str]) -> None:
        await self._request("POST", "/queue", json_body={"delete": prompt_ids}, expect="empty")

    async def withdraw(self, prompt_ids: list[str]) -> None:
        """Take our prompts off the server, best effort: deleted where still queued, interrupted
        where running. Each request is attempted on its own (a failing delete must not leave a
        prompt to run on), and a server that does not answer has nothing of ours running anyway.
        The one path every "drop this work" goes through (plans, walks, pauses, cancelled callers)."""
        if not prompt_ids:
            return
        with contextlib.suppress(ComfyUIError):
            await self.delete_queued(prompt_ids)
        for pid in prompt_ids:
            with contextlib.suppress(ComfyUIError):
                await self.interrupt(pid)


def _json(body: bytes) -> Any:
    """A body as JSON (None when empty, as aiohttp's ``json()`` does). ValueError / RecursionError
    for one that is not: the caller maps them."""
    return json.loads(body) if body.strip() else None


def unsafe_file(ref: OutputFile) -> str | None:
    """Why ``ref`` would name a file outside the server's folders, or None when it is safe.

    A file name is one plain name; a subfolder is relative, with no ``..`` or ``.`` part (a
    Windows server separates with backslashes, so both separators count); no NUL or control
    characters and no ``:`` (a drive, or a Windows alternate stream) anywhere; the type is one of
    ComfyUI's folders.
    """
    if ref.type not in FILE_TYPES:
        return f"unknown folder type {ref.type[:40]!r}"
    for part, text in (("file name", ref.filename), ("subfolder", ref.subfolder)):
        if any(ord(c) < 32 or c == ":" for c in text):
            return f"{part} with a control character or ':'"
    name = ref.filename
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        return "file name is not a plain name"
    sub = ref.subfolder
    if sub and (sub[0] in "/\\" or any(p in ("", ".", "..") for p in sub.replace("\\", "/").split("/"))):
        return "subfolder leaves the server's folder"
    return None


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
    """Wait for ``event`` up to ``timeout``; True if it was set.

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that arrives as the
    event fires, leaving the caller running after it was cancelled (fixed in 3.12)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)


class _Retryable(Exception):
    pass


# What a retry may fix: the connection, a timeout, a 5xx.
_TRANSIENT = (_Retryable, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class _Rejected(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("rejected")
        self.body = body
