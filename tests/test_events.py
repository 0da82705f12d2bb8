"""EventBus: typed subscription, listeners that raise are logged and kept, the viewer's payloads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dream_window.events import (
    Event,
    EventBus,
    FramePublished,
    Injection,
    Note,
    Preview,
    Progress,
    PromptChanged,
    StateChanged,
)


def test_a_subscription_gets_its_type_only_and_event_gets_all() -> None:
    bus = EventBus()
    progress: list[Progress] = []
    everything: list[Event] = []
    bus.subscribe(Progress, progress.append)
    stop = bus.subscribe(Event, everything.append)
    bus.emit(Progress(1, 4))
    bus.emit(Note("in-betweens are pixel crossfades"))
    assert progress == [Progress(1, 4)]
    assert everything == [Progress(1, 4), Note("in-betweens are pixel crossfades")]
    stop()
    bus.emit(Progress(2, 4))
    assert len(everything) == 2 and progress[-1] == Progress(2, 4)


def test_a_listener_that_raises_is_logged_and_kept(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    calls: list[str] = []

    def broken(event: Injection) -> None:
        calls.append("broken")
        raise RuntimeError("boom")

    bus.subscribe(Injection, broken)
    bus.subscribe(Injection, lambda e: calls.append(e.label))
    with caplog.at_level(logging.ERROR, logger="dream_window.events"):
        bus.emit(Injection("a"))
        bus.emit(Injection("b"))
    assert calls == ["broken", "a", "broken", "b"]
    assert sum("failed on injection" in r.getMessage() for r in caplog.records) == 2


def test_payloads_are_the_viewers_json() -> None:
    frame = FramePublished(
        7, "mist", "keyframe", Path("/out/frames/frame_000007.png"), b"\x89PNG", seed=3, mode="hybrid"
    )
    who = {"seed": 3, "mode": "hybrid", "backend": "", "model": ""}
    cases: list[tuple[Event, str, dict[str, object]]] = [
        (frame, "frame", {"index": 7, "prompt": "mist", "kind": "keyframe", **who}),  # no path, no bytes
        (StateChanged("paused", ("user",)), "state", {"state": "paused", "reasons": ["user"]}),
        (Progress(3, 8), "progress", {"value": 3, "max": 8}),
        (
            PromptChanged("mist", "skip"),
            "prompt",
            {"prompt": "mist", "why": "skip", "held": False, "held_s": None},
        ),
        (
            PromptChanged("fog", "set by user", 600.0),
            "prompt",
            {"prompt": "fog", "why": "set by user", "held": True, "held_s": 600.0},
        ),
        (
            PromptChanged("fog", "set by user", float("inf")),
            "prompt",
            {"prompt": "fog", "why": "set by user", "held": True, "held_s": None},
        ),
        (Preview(b"\xff\xd8", "image/jpeg"), "preview", {"mime": "image/jpeg", "data": "/9g="}),
        (Injection("ab12 (similarity 0.9)"), "injection", {"label": "ab12 (similarity 0.9)"}),
        (Note("in-betweens are pixel crossfades"), "note", {"text": "in-betweens are pixel crossfades"}),
    ]
    for event, name, payload in cases:
        assert event.name == name
        assert event.payload() == payload
        json.dumps(event.payload())  # JSON-ready as it is
