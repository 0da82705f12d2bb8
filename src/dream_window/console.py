"""The one-line live status in the terminal (only when stderr is a terminal)."""

from __future__ import annotations

from collections.abc import Callable

from rich.live import Live
from rich.text import Text

from dream_window.dream.controller import DreamController
from dream_window.events import Event, FramePublished, Progress
from dream_window.logging_setup import console


def _line(controller: DreamController, progress: Progress | None) -> Text:
    s = controller.snapshot()
    state = s["state"]
    colour = {"running": "green", "paused": "yellow", "stopped": "red"}.get(state, "white")
    t = Text()
    t.append(f"● {state}", style=colour)
    if s["pause_reason"]:
        t.append(f" ({s['pause_reason']})", style="yellow")
    t.append(f"  frame {s['frame_index']}  {s['frames_per_minute']:.0f}/min  ")
    if progress is not None and progress.maximum:
        done = int(20 * progress.value / max(progress.maximum, 1))
        t.append("▕" + "█" * done + " " * (20 - done) + "▏ ", style="cyan")
    t.append(s["current_prompt"][:60], style="dim")
    return t


def attach_console(controller: DreamController) -> Callable[[], None]:
    """Show a live status line; returns a function that removes it."""
    if not console.is_terminal:
        return lambda: None
    live = Live(_line(controller, None), console=console, refresh_per_second=4, transient=True)
    live.start()
    progress: Progress | None = None

    def on_event(event: Event) -> None:
        nonlocal progress
        if isinstance(event, Progress):
            progress = event
        elif isinstance(event, FramePublished):
            progress = None
        live.update(_line(controller, progress))

    unsubscribe = controller.events.subscribe(Event, on_event)

    def detach() -> None:
        unsubscribe()
        live.stop()

    return detach
