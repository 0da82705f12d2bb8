"""``ComfyTestServer``: a real aiohttp server on a loopback port that speaks ComfyUI v0.33.0.

It is assembled from parts with one job each: :mod:`~comfyui_fake.routes` answers HTTP and
WebSocket requests, :mod:`~comfyui_fake.validation` checks prompts against the recorded
``object_info`` (:mod:`~comfyui_fake.schemas`), :mod:`~comfyui_fake.executor` queues prompts and
:mod:`~comfyui_fake.prompt_run` runs each with the built-in engine (:mod:`~comfyui_fake.nodes`),
sending the recorded message sequence (:mod:`~comfyui_fake.protocol`,
:mod:`~comfyui_fake.sockets`), and :mod:`~comfyui_fake.faults` holds the injected faults. This class owns their lifecycle and is the API tests use:

* ``running_comfy_server(root=...)`` starts one for an ``async with`` body; ``server.url``;
* ``server.seen("/interrupt")`` lists the requests received on a path, ``server.history`` the
  finished prompts, ``server.root`` holds ``input/``, ``output/`` and ``temp/``;
* faults: ``refuse_connections`` / ``accept_connections``, ``fail_requests``,
  ``drop_websockets_after``, ``silence_websockets``, ``stall`` / ``release``, ``slow_view``, ``restart`` (history, queue
  and counters reset, files kept, temp/ wiped), ``fail_classes`` and ``broken_models``
  (``break_model`` / ``fix_model`` for one file);
* ``step_delay`` (seconds per sampler step), ``model_load_delay`` (seconds the first load of a
  model file takes after a start, ``restart`` or ``/free``; ``stats.model_loads`` counts the loads,
  ``loaded_models`` names the files loaded now) and ``prime_cache`` (to replay a recorded scenario
  that found nodes cached), ``decode_delay`` (seconds per image a VAEDecode makes: a real decode
  takes GPU time too).
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from comfyui_fake.executor import Executor
from comfyui_fake.faults import DEFAULT_BROKEN, Faults
from comfyui_fake.records import Folders, QueueItem, Stats
from comfyui_fake.routes import Routes
from comfyui_fake.schemas import DEFAULT_MODELS, Schemas, recorded_object_info
from comfyui_fake.sockets import SocketHub
from dream_window.backends.builtin import BuiltinEngine


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    body: Any
    at: float


class ComfyTestServer:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        root: Path | None = None,
        step_delay: float = 0.0,
        model_load_delay: float = 0.0,
        decode_delay: float = 0.0,
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
        self.folders = Folders(self.root / "input", self.root / "output", self.root / "temp")
        for folder in (self.folders.input, self.folders.output, self.folders.temp):
            folder.mkdir(parents=True, exist_ok=True)
        self.faults = Faults(broken_models=set(DEFAULT_BROKEN if broken_models is None else broken_models))
        self.schemas = Schemas(
            object_info or recorded_object_info(), copy.deepcopy(models or DEFAULT_MODELS), self.folders.input
        )
        self.hub = SocketHub()
        self.engine = BuiltinEngine(offload=False)
        self.executor = Executor(
            engine=self.engine, folders=self.folders, schemas=self.schemas, faults=self.faults, hub=self.hub
        )
        self.executor.step_delay = step_delay
        self.executor.model_load_delay = model_load_delay
        self.executor.decode_delay = decode_delay
        self.requests: list[RequestRecord] = []
        self._runner: web.AppRunner | None = None

    # --- what tests read and set -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def history(self) -> dict[str, dict[str, Any]]:
        return self.executor.history

    @property
    def stats(self) -> Stats:
        return self.executor.stats

    @property
    def running(self) -> QueueItem | None:
        """The prompt executing now."""
        return self.executor.running

    @property
    def pending(self) -> list[QueueItem]:
        """The prompts waiting behind it, in queue order."""
        return self.executor.pending

    # The names the server had before it was split; tests/backends/comfyui/test_latent_walk.py reads them.
    _running = running
    _queue = pending

    @property
    def models(self) -> dict[str, list[str]]:
        return self.schemas.models

    @property
    def step_delay(self) -> float:
        return self.executor.step_delay

    @step_delay.setter
    def step_delay(self, seconds: float) -> None:
        self.executor.step_delay = seconds

    @property
    def model_load_delay(self) -> float:
        return self.executor.model_load_delay

    @model_load_delay.setter
    def model_load_delay(self, seconds: float) -> None:
        self.executor.model_load_delay = seconds

    @property
    def decode_delay(self) -> float:
        return self.executor.decode_delay

    @decode_delay.setter
    def decode_delay(self, seconds: float) -> None:
        self.executor.decode_delay = seconds

    @property
    def loaded_models(self) -> frozenset[str]:
        """The model files loaded since the last start, ``restart`` or ``/free``."""
        return frozenset(self.executor.loaded_models)

    @property
    def slow_view(self) -> float:
        return self.faults.slow_view

    @slow_view.setter
    def slow_view(self, seconds: float) -> None:
        self.faults.slow_view = seconds

    @property
    def fail_classes(self) -> dict[str, str]:
        return self.faults.fail_classes

    @fail_classes.setter
    def fail_classes(self, failures: dict[str, str]) -> None:
        self.faults.fail_classes = failures

    @property
    def broken_models(self) -> set[str]:
        return self.faults.broken_models

    @broken_models.setter
    def broken_models(self, names: set[str]) -> None:
        self.faults.broken_models = names

    def seen(self, path: str, method: str | None = None) -> list[RequestRecord]:
        """Requests received on ``path`` (``/api`` prefix stripped), in order."""
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def record(self, method: str, path: str, body: Any) -> None:
        self.requests.append(RequestRecord(method, path, body, time.monotonic()))

    def object_info(self) -> dict[str, Any]:
        """The recorded schemas with this server's model files and input folder filled in."""
        return self.schemas.object_info()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()
        self.executor.start()

    async def stop(self) -> None:
        await self.executor.stop()
        await self._stop_listening()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _listen(self) -> None:
        self._runner = web.AppRunner(
            Routes(
                executor=self.executor,
                hub=self.hub,
                faults=self.faults,
                schemas=self.schemas,
                folders=self.folders,
                record=self.record,
            ).application(),
            handle_signals=False,
            shutdown_timeout=0.5,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop_listening(self) -> None:
        await self.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- faults ------------------------------------------------------------------------------

    async def refuse_connections(self) -> None:
        """Stop listening (connections are refused) until :meth:`accept_connections`; state is kept."""
        await self._stop_listening()

    async def accept_connections(self) -> None:
        await self._listen()

    async def restart(self) -> None:
        """A process restart: sockets dropped, the running prompt lost, history, queue and counters
        reset. input/ and output/ stay; temp/ is wiped, as ComfyUI's ``cleanup_temp()`` does."""
        await self.executor.stop()
        await self._stop_listening()
        shutil.rmtree(self.folders.temp, ignore_errors=True)
        self.folders.temp.mkdir(parents=True, exist_ok=True)
        self.executor.reset()
        await self._listen()
        self.executor.start()

    def fail_requests(self, count: int, *, path: str | None = None) -> None:
        """The next ``count`` HTTP requests (only those on ``path``, when given) answer 500."""
        self.faults.fail_requests(count, path=path)

    def silence_websockets(self, silent: bool = True) -> None:
        """Sockets stay open and answer pings but carry no message until called with False."""
        self.hub.silent = silent

    def drop_websockets_after(self, steps: int) -> None:
        """Close every WebSocket after ``steps`` more sampler steps (once)."""
        self.faults.drop_websockets_after(steps)

    def stall(self) -> None:
        """Samplers hang before their next step until :meth:`release` (or an interrupt)."""
        self.faults.stall()

    def release(self) -> None:
        self.faults.release()

    def break_model(self, name: str, *, garbage: bool = False) -> None:
        """Loading ``name`` fails from the next loader run on (one already loaded and cached is
        not run again until ``/free``): as a 0-byte file ("header too small"), or with
        ``garbage`` as a corrupt one ("header too large")."""
        self.faults.break_model(name, garbage=garbage)

    def fix_model(self, name: str) -> None:
        self.faults.fix_model(name)

    async def prime_cache(self, graph: dict[str, Any], nodes: list[str]) -> None:
        """Execute ``nodes`` of ``graph`` quietly so later prompts find them cached, as on a server
        that has run them before (for replaying recorded scenarios mid-session)."""
        await self.executor.prime(graph, nodes)


@contextlib.asynccontextmanager
async def running_comfy_server(**kwargs: Any) -> AsyncIterator[ComfyTestServer]:
    """Start a :class:`ComfyTestServer` on a free loopback port for the ``async with`` body."""
    server = ComfyTestServer(**kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
