"""The one-line live status in the terminal (only when stderr is a terminal)."""

from __future__ import annotations

from collections.abc import Callable

from rich.live import Live
from rich.text import Text

from dream_window.dream.controller import DreamController
from dream_window.events import Event, FramePublished, Progress
from dream_window.logging_setup import console


def _line(controller: DreamController, progress: Progress | None) -> Text:
    state = controller.state.value
    colour = {"running": "green", "paused": "yellow", "stopped": "red"}.get(state, "white")
    t = Text()
    t.append(f"● {state}", style=colour)
    if controller.pause_reasons:
        t.append(f" ({controller.pause_reasons[0]})", style="yellow")
    t.append(f"  frame {controller.output.last_index}  {controller.frames_per_minute():.0f}/min  ")
    if progress is not None and progress.maximum:
        done = int(20 * progress.value / max(progress.maximum, 1))
        t.append("▕" + "█" * done + " " * (20 - done) + "▏ ", style="cyan")
    shown = controller.on_screen
    on_screen = shown.prompt if shown is not None else ""
    t.append(on_screen[:60], style="dim")
    if controller.prompts.current != on_screen:  # a change on its way to the screen
        t.append(f"  → {controller.prompts.current[:40]}", style="cyan")
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
