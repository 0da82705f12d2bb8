"""What happens in the dream, as typed events on one synchronous bus.

The controller, the prompt manager, the generator and the modes announce; the viewer, the console,
the Rainmeter writer, the system monitor and the controller itself listen. One frozen dataclass per
event; ``subscribe(FramePublished, handler)`` hands ``handler`` exactly those (``subscribe(Event,
...)`` hands it every one). Each event gives its JSON body with :meth:`Event.payload`, the viewer's
WebSocket message under the name :attr:`Event.name`::

    name        event            payload
    frame       FramePublished   index, prompt, kind, seed, mode, backend, model
                                 (path, PNG bytes and picture stay on the server)
    state       StateChanged     state, reasons
    progress    Progress         value, max
    prompt      PromptChanged    prompt, why, held, held_s  (what frames are made for *next*)
    preview     Preview          mime, data (base64)
    injection   Injection        label
    note        Note             text

and one event the viewer does not send (its payload is for logs and tests; the vector stays in
process)::

    embedded    FrameEmbedded    index, embedder, clip

Listeners run in the thread that emits, which is the event loop's: the controller hands the
backend's progress and preview callbacks (a worker thread, for the built-in engine) to the loop
before emitting them. Listeners must be quick; one that raises is logged and kept, so one bad
listener cannot stop the dream. This module sits at the bottom of the layers, next to config and
clock: payloads are plain fields, never the value types above it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """Every event: :attr:`name` is its ``type`` in the viewer's JSON, :meth:`payload` the rest."""

    name: ClassVar[str]

    def payload(self) -> dict[str, object]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class FramePublished(Event):
    """A frame is on disk (history ``path``, and ``current_frame.png``)."""

    name: ClassVar[str] = "frame"
    index: int
    prompt: str
    kind: str
    path: Path
    # The PNG the output writer already encoded, so another writer (Rainmeter) copies, not re-encodes.
    png: bytes | None = field(default=None, repr=False, compare=False)
    # The picture those bytes encode, so a listener that measures pixels (quality) does not decode
    # them again. Read it, never change it: every listener shares it.
    image: Image.Image | None = field(default=None, repr=False, compare=False)
    # Who made it (see values/frame.py FrameLabel; the same facts are in the PNG's text).
    seed: int | None = None
    mode: str = ""
    backend: str = ""
    model: str = ""

    def payload(self) -> dict[str, object]:
        return {
            "index": self.index,
            "prompt": self.prompt,
            "kind": self.kind,
            "seed": self.seed,
            "mode": self.mode,
            "backend": self.backend,
            "model": self.model,
        }


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    """The state changed (the lifecycle, the reasons held for a pause, or the backend's health:
    running, waiting, degraded; see dream/supervisor.py)."""

    name: ClassVar[str] = "state"
    state: str
    reasons: tuple[str, ...] = ()

    def payload(self) -> dict[str, object]:
        return {"state": self.state, "reasons": list(self.reasons)}


@dataclass(frozen=True, slots=True)
class Progress(Event):
    """A step of the generation running now (``value`` of ``maximum``)."""

    name: ClassVar[str] = "progress"
    value: int
    maximum: int

    def payload(self) -> dict[str, object]:
        return {"value": self.value, "max": self.maximum}


@dataclass(frozen=True, slots=True)
class PromptChanged(Event):
    """Frames are now made for another prompt; ``why``: rotation, skip, set by user, hold ended.
    It reaches the screen with the next frames (FramePublished says when). ``held_s``: a prompt
    the user typed holds this many seconds (``inf``: until skipped), None when not held."""

    name: ClassVar[str] = "prompt"
    prompt: str
    why: str
    held_s: float | None = None

    def payload(self) -> dict[str, object]:
        held = None if self.held_s is None or self.held_s == float("inf") else self.held_s
        return {"prompt": self.prompt, "why": self.why, "held": self.held_s is not None, "held_s": held}


@dataclass(frozen=True, slots=True)
class Preview(Event):
    """A live preview of the picture being sampled (backends that have them)."""

    name: ClassVar[str] = "preview"
    data: bytes = field(repr=False)
    mime: str = "image/jpeg"

    def payload(self) -> dict[str, object]:
        return {"mime": self.mime, "data": base64.b64encode(self.data).decode("ascii")}


@dataclass(frozen=True, slots=True)
class Injection(Event):
    """A cached frame is being re-injected; ``label`` says which, for status."""

    name: ClassVar[str] = "injection"
    label: str

    def payload(self) -> dict[str, object]:
        return {"label": self.label}


@dataclass(frozen=True, slots=True)
class Note(Event):
    """A one-line note for status about a fallback in effect (``in-betweens are pixel crossfades``)."""

    name: ClassVar[str] = "note"
    text: str

    def payload(self) -> dict[str, object]:
        return {"text": self.text}


@dataclass(frozen=True, slots=True)
class FrameEmbedded(Event):
    """The frame cache embedded published frame ``index`` (a generated one): ``vector`` is its
    L2-normalised embedding by ``embedder`` (its label); ``clip`` says whether that is CLIP's image
    tower (else colour/layout features). The quality metrics measure drift in CLIP space with it."""

    name: ClassVar[str] = "embedded"
    index: int
    vector: np.ndarray = field(repr=False, compare=False)
    embedder: str = ""
    clip: bool = False

    def payload(self) -> dict[str, object]:
        return {"index": self.index, "embedder": self.embedder, "clip": self.clip}


E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True, eq=False)
class _Subscription:
    deliver: Callable[[Event], None]
    handler: object  # for the log line when it fails


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: list[_Subscription] = []
        self._lock = threading.Lock()
        # The loop listeners run on; events from other threads (a backend's callbacks) go to it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def bind_loop(self) -> None:
        """Listeners run on the running loop from now on (call from inside it)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def emit_threadsafe(self, event: Event) -> None:
        """:meth:`emit` from any thread: handed to the bound loop unless already on it."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            self.emit(event)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody is listening
            loop.call_soon_threadsafe(self.emit, event)

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call ``handler`` with every event of type ``kind`` from now on; returns a function that
        stops it again."""

        def deliver(event: Event) -> None:
            if isinstance(event, kind):
                handler(event)

        sub = _Subscription(deliver, handler)
        with self._lock:
            self._subscriptions.append(sub)

        def unsubscribe() -> None:
            with self._lock:
                if sub in self._subscriptions:
                    self._subscriptions.remove(sub)

        return unsubscribe

    def emit(self, event: Event) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for sub in subscriptions:
            try:
                sub.deliver(event)
            except Exception:
                log.exception("event listener %r failed on %s", sub.handler, event.name)
