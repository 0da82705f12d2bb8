"""Fault injection: the ways a real ComfyUI misbehaves, on demand, for the integration tests.

The server's public methods (``fail_requests``, ``drop_websockets_after``, ``stall`` /
``release``, ``slow_view``, ``fail_classes``, ``broken_models``) set the state kept here; the
routes and the executor ask it at the moment a fault could strike. Faults that need the listening
socket itself (``refuse_connections`` / ``accept_connections``, ``restart``) are carried out by the
server, which owns the socket.

* ``fail_requests(n, path=None)``: the next ``n`` HTTP requests (on ``path`` only, when given)
  answer aiohttp's 500 page, as a crashing handler does.
* ``drop_websockets_after(steps)``: every socket is closed after that many more sampler steps.
* ``stall()`` / ``release()``: samplers wait before their next step (an interrupt also releases).
* ``slow_view``: seconds /view waits before answering.
* ``fail_classes``: class_type → message; such nodes raise ``RuntimeError(message)`` when run.
* ``broken_models``: model files that fail to load the way a broken safetensors file does, with
  ``SafetensorError``: "header too small" for a 0-byte file (the recording's Flux and SDXL dummies,
  ``09_flux_sdxl_validation``), "header too large" for garbage bytes (its
  ``corrupt_checkpoint.safetensors``, ``07_runtime_error``). ``break_model`` / ``fix_model`` change
  one file at run time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

# The recording's corrupt checkpoint; it stays broken unless a test says otherwise.
DEFAULT_BROKEN = frozenset({"corrupt_checkpoint.safetensors"})

# safetensors reads an 8-byte header length first: a 0-byte file has none, garbage reads as a huge one.
HEADER_TOO_SMALL = "Error while deserializing header: header too small"
HEADER_TOO_LARGE = "Error while deserializing header: header too large"


@dataclass
class Faults:
    broken_models: set[str] = field(default_factory=lambda: set(DEFAULT_BROKEN))
    # Which broken files hold garbage rather than nothing (the rest read as 0-byte files).
    garbage_models: set[str] = field(default_factory=lambda: set(DEFAULT_BROKEN))
    fail_classes: dict[str, str] = field(default_factory=dict)
    slow_view: float = 0.0
    _failures_left: int = field(default=0, init=False)
    _failure_path: str | None = field(default=None, init=False)
    _steps_before_drop: int | None = field(default=None, init=False)
    _gate: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        self._gate.set()

    # --- model files -------------------------------------------------------------------------

    def break_model(self, name: str, *, garbage: bool = False) -> None:
        """``name`` fails to load from now on: as a 0-byte file, or (``garbage``) a corrupt one."""
        self.broken_models.add(name)
        if garbage:
            self.garbage_models.add(name)
        else:
            self.garbage_models.discard(name)

    def fix_model(self, name: str) -> None:
        self.broken_models.discard(name)
        self.garbage_models.discard(name)

    def load_error(self, name: str) -> str | None:
        """The SafetensorError message loading ``name`` fails with; None when it loads."""
        if name not in self.broken_models:
            return None
        return HEADER_TOO_LARGE if name in self.garbage_models else HEADER_TOO_SMALL

    # --- HTTP --------------------------------------------------------------------------------

    def fail_requests(self, count: int, *, path: str | None = None) -> None:
        self._failures_left = count
        self._failure_path = path

    def should_fail(self, path: str) -> bool:
        """Whether this request is one of the injected 500s (and count it)."""
        if self._failures_left > 0 and self._failure_path in (None, path):
            self._failures_left -= 1
            return True
        return False

    # --- WebSocket ---------------------------------------------------------------------------

    def drop_websockets_after(self, steps: int) -> None:
        self._steps_before_drop = steps

    def step_done(self) -> bool:
        """Count a sampler step; True once, when the sockets should be dropped now."""
        if self._steps_before_drop is None:
            return False
        self._steps_before_drop -= 1
        if self._steps_before_drop > 0:
            return False
        self._steps_before_drop = None
        return True

    # --- sampling ----------------------------------------------------------------------------

    def stall(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    async def wait_released(self) -> None:
        await self._gate.wait()
