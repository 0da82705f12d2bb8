"""The system monitor: pause the dream by itself for games, a busy GPU, a fullscreen app, nobody
looking (a locked session, a screensaver, displays off), or battery.

Module map::

    detector.py            Reading / Condition / CheckContext: what every detector answers
    games.py               psutil process scan: known names, default list, game-library folders
    gpu.py                 NVML reader + window average, hysteresis, own-load discounting
    fullscreen_geometry.py geometry decisions (a window covers its own monitor), shared by the readers
    fullscreen.py          the platform choice (which reader runs here)
    fullscreen_windows.py  ctypes reader + pure decision (Windows)
    fullscreen_x11.py      python-xlib reader (Linux X11)
    battery.py             psutil battery (optional)
    presence.py            lock / screensaver / displays: the platform choice
    presence_names.py      their names and pause reasons, shared by the readers
    presence_windows.py    ctypes reader + pure decisions (Windows)
    presence_dbus.py       logind LockedHint + screensaver GetActive over D-Bus (jeepney, Linux)
    presence_x11.py        DPMS + X screen saver (python-xlib, Linux X11)
    x11_link.py            the X connection both X11 readers keep, reopened when the server goes away
    system_monitor.py      SystemMonitor: the loop, pause-at-once / resume-after-cooldown policy

:class:`MonitorService` is what the app registers: it runs the SystemMonitor beside the dream
and answers ``dream-window doctor``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from dream_window.config import DreamConfig, GameDetectionConfig
from dream_window.dream.service import Dream
from dream_window.events import Progress
from dream_window.monitor.detector import CheckContext, Condition, Detector, Reading, StaticDetector
from dream_window.monitor.system_monitor import SystemMonitor
from dream_window.values.check import Check

log = logging.getLogger(__name__)

# Startup waits this long at most for the first check.
FIRST_CHECK_TIMEOUT = 5.0

__all__ = ["MonitorService", "SystemMonitor", "build_detectors"]


def build_detectors(config: DreamConfig) -> list[Detector]:
    """The detectors ``game_detection`` asks for, each able to say why it cannot work here."""
    from dream_window.monitor.battery import BatteryDetector
    from dream_window.monitor.fullscreen import create_fullscreen_detector
    from dream_window.monitor.games import GameScanner
    from dream_window.monitor.gpu import GpuDetector, OwnProcesses, open_nvml
    from dream_window.monitor.presence import create_presence_detectors

    gd: GameDetectionConfig = config.game_detection
    detectors: list[Detector] = [
        GameScanner(
            known_games=gd.known_games,
            use_default_games=gd.use_default_games,
            library_paths=gd.game_library_paths,
            ignore=gd.ignore_processes,
        )
    ]
    reader = open_nvml()
    if isinstance(reader, str):
        detectors.append(StaticDetector("gpu", Reading.unavailable(reader)))
    else:
        count = reader.device_count()
        if gd.gpu_index >= count:
            reader.close()
            detectors.append(
                StaticDetector(
                    "gpu",
                    Reading.unavailable(
                        f"game_detection.gpu_index is {gd.gpu_index}, but NVML sees {count} GPU(s)"
                    ),
                )
            )
        else:
            own = OwnProcesses(config.system.comfyui_urls)
            detectors.append(
                GpuDetector(
                    reader,
                    index=gd.gpu_index,
                    threshold=gd.gpu_threshold,
                    resume_threshold=gd.gpu_resume_threshold,
                    hold_seconds=gd.gpu_hold_seconds,
                    window_seconds=gd.gpu_window_seconds,
                    own=own.pids,
                )
            )
    if gd.fullscreen:
        detectors.append(create_fullscreen_detector())
    if gd.pause_on_battery:
        detectors.append(BatteryDetector())
    if gd.pause_when_unseen:
        detectors.extend(create_presence_detectors())
    return detectors


class MonitorService:
    """The system monitor as a service: runs while the dream runs when ``game_detection.enabled``."""

    name = "monitor"

    def __init__(self, config: DreamConfig) -> None:
        self.config = config
        self.monitor: SystemMonitor | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self, dream: Dream) -> None:
        gd = self.config.game_detection
        if not gd.enabled:
            return
        detectors = await asyncio.to_thread(build_detectors, self.config)  # NVML init and imports may block
        monitor = SystemMonitor(
            detectors,
            dream,
            clock=dream.clock,
            interval=gd.check_interval,
            cooldown=gd.cooldown_seconds,
            free_memory=gd.free_vram_on_pause,
            generating=lambda: dream.generating,
        )
        self.monitor = monitor
        self._unsubscribe = dream.events.subscribe(Progress, monitor.on_progress)
        # First check now, before the dream starts: with a game already running the controller starts
        # paused, and no model is loaded onto the player's GPU only to be unloaded a moment later.
        try:
            await asyncio.wait_for(monitor.check_once(), FIRST_CHECK_TIMEOUT)
        except TimeoutError:  # a detector hangs (X server not answering): start the dream anyway
            log.warning(
                "system monitor: first check took over %gs; starting without waiting", FIRST_CHECK_TIMEOUT
            )
        self._task = asyncio.create_task(monitor.run(check_first=False), name="system-monitor")

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.wait([task])  # never swallows a cancellation aimed at close() itself
        if self.monitor is not None:
            await asyncio.to_thread(self.monitor.close)

    def describe(self) -> dict[str, object] | None:
        """The ``monitor`` block of status.json; none when switched off."""
        return self.monitor.describe() if self.monitor is not None else None

    async def doctor_checks(self) -> list[Check]:
        """One line per detector: available or not, and why."""
        gd = self.config.game_detection
        if not gd.enabled:
            return [Check("system monitor", "info", "disabled (game_detection.enabled: false)")]
        detectors = await asyncio.to_thread(build_detectors, self.config)
        try:
            ctx = CheckContext(now=0.0)
            out = []
            for d in detectors:
                try:
                    r = await asyncio.to_thread(d.check, ctx)
                except Exception as exc:
                    out.append(Check(f"monitor: {d.name}", "fail", f"check crashed: {exc!r}"))
                    continue
                what = d.describe()
                if r.condition in (Condition.CLEAR, Condition.ACTIVE):
                    now = (
                        "would pause now: " + (r.reason or "")
                        if r.condition is Condition.ACTIVE
                        else r.detail
                    )
                    out.append(
                        Check(f"monitor: {d.name}", "ok", f"available{f' ({what})' if what else ''}; {now}")
                    )
                elif r.condition is Condition.UNKNOWN:
                    out.append(Check(f"monitor: {d.name}", "warn", r.detail))
                else:
                    missing_pkg = "not installed" in r.detail
                    out.append(
                        Check(
                            f"monitor: {d.name}",
                            "warn" if missing_pkg else "info",
                            f"{r.condition.value}: {r.detail} (never pauses)",
                        )
                    )
            if not gd.fullscreen:
                out.append(Check("monitor: fullscreen", "info", "off (game_detection.fullscreen: false)"))
            if not gd.pause_when_unseen:
                out.append(
                    Check(
                        "monitor: lock, screensaver, displays",
                        "info",
                        "off (game_detection.pause_when_unseen: false)",
                    )
                )
            return out
        finally:
            for d in detectors:
                d.close()

    async def free_memory(self) -> None:
        return None
