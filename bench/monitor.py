"""What one SystemMonitor check costs, per detector, on this machine.

    .venv/bin/python bench/monitor.py [--runs 200]

* games: the real process table, asking psutil only for ``name`` (no library folders), for
  ``name`` + ``exe`` (the default config), and — for comparison — for every attribute, which is what
  ``process_iter()`` followed by ``as_dict()`` costs.
* gpu: one NVML check (device + per-process utilisation + compute processes), or "unavailable".
* fullscreen: X11 on a private Xvfb with a fullscreen window (skipped without Xvfb), and the
  Windows decision on injected readings.
* battery: psutil.sensors_battery().
* the whole monitor check through ``asyncio.to_thread`` (what the event loop waits for).

Prints the median (and p90) over ``--runs`` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import psutil

from dream_window.monitor.battery import BatteryDetector
from dream_window.monitor.detector import CheckContext
from dream_window.monitor.fullscreen_geometry import Rect
from dream_window.monitor.fullscreen_windows import ForegroundWindow, decide
from dream_window.monitor.games import GameScanner, proc_processes, psutil_processes
from dream_window.monitor.gpu import GpuDetector, OwnProcesses, open_nvml
from dream_window.monitor.system_monitor import SystemMonitor

LIBS = ["steamapps/common", "Epic Games", "GOG Galaxy/Games", "GOG Games"]


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    fn()  # warm-up (psutil's Process cache, NVML handles, X atoms)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def row(label: str, result: tuple[float, float] | str) -> None:
    if isinstance(result, str):
        print(f"  {label:<46} {result}")
    else:
        print(f"  {label:<46} {result[0]:8.3f} ms   (p90 {result[1]:.3f})")


def all_attrs_scan() -> None:
    for p in psutil.process_iter():
        try:
            p.as_dict()
        except psutil.Error:
            pass


def x11_bench(runs: int) -> tuple[float, float] | str:
    exe = shutil.which("Xvfb")
    if exe is None:
        return "Xvfb not installed: skipped"
    try:
        from Xlib import X, Xatom
        from Xlib import display as xdisplay

        from dream_window.monitor.fullscreen_x11 import X11Fullscreen
    except ImportError:
        return "python-xlib not installed: skipped"
    r, w = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(w), "-screen", "0", "1920x1080x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            name = ":" + f.readline().strip().decode()
        d = xdisplay.Display(name)
        s = d.screen()
        win = s.root.create_window(0, 0, 1920, 1080, 0, s.root_depth, X.InputOutput, X.CopyFromParent)
        win.set_wm_name("bench game")
        win.map()
        s.root.change_property(d.intern_atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW, 32, [win.id])
        d.sync()
        det = X11Fullscreen(name)
        ctx = CheckContext(now=0)
        assert det.check(ctx).reason == "fullscreen: bench game"
        result = timed(lambda: det.check(ctx), runs)
        det.close()
        d.close()
        return result
    finally:
        proc.terminate()
        proc.wait(5)


class _Target:
    state = None

    async def pause(self, reason: str, *, interrupt: bool = False, free_memory: bool = False) -> None: ...

    async def resume(self, reason: str) -> None: ...


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    runs = ap.parse_args().runs
    n = len(psutil.pids())
    print(f"monitor check cost, median of {runs} runs ({n} processes, {os.cpu_count()} CPUs, {sys.platform})")

    ctx = CheckContext(now=0)
    by_name = GameScanner(library_paths=[], processes=psutil_processes)
    by_path_psutil = GameScanner(library_paths=LIBS, processes=psutil_processes)
    by_path = GameScanner(library_paths=LIBS)  # the default source for this platform
    t_name = timed(lambda: by_name.check(ctx), runs)
    t_psutil = timed(lambda: by_path_psutil.check(ctx), runs)
    t_all = timed(all_attrs_scan, max(10, runs // 10))
    row("games: psutil, name only", t_name)
    row("games: psutil, name + exe (default rules)", t_psutil)
    row("games: psutil, every attribute (as_dict)", t_all)
    print(f"  -> asking psutil only for name+exe: {t_all[0] / t_psutil[0]:.0f}x cheaper than every attribute")
    if by_path._processes is proc_processes:
        t_proc = timed(lambda: by_path.check(ctx), runs)
        row("games: /proc fast path, name + exe (Linux default)", t_proc)
        print(f"  -> /proc fast path: {t_psutil[0] / t_proc[0]:.1f}x cheaper than psutil, same answers")

    reader = open_nvml()
    if isinstance(reader, str):
        row("gpu: NVML", f"unavailable ({reader})")
        gpu: Any = None
    else:
        own = OwnProcesses(["http://127.0.0.1:8188"])
        gpu = GpuDetector(reader, own=own.pids)
        row(f"gpu: NVML check ({reader.device_name(0)})", timed(lambda: gpu.check(ctx), runs))
        row(
            "gpu: own-process lookup (every 60 s)", timed(lambda: own._finder(own.ports), max(10, runs // 10))
        )
        print(f"  gpu: per-process utilisation supported: {reader.process_utilization(0) is not None}")

    row("fullscreen: X11 on Xvfb (fullscreen window)", x11_bench(runs))
    fg = ForegroundWindow(
        1, "Game", "UnityWndClass", "game.exe", Rect(0, 0, 1920, 1080), Rect(0, 0, 1920, 1080)
    )
    row("fullscreen: Windows decision (pure)", timed(lambda: decide(fg, None), runs))
    row("battery: psutil.sensors_battery", timed(lambda: BatteryDetector().check(ctx), runs))

    dets: list[Any] = [by_path] + ([gpu] if gpu is not None else [])
    monitor = SystemMonitor(dets, _Target(), clock=_Clock(), interval=2.0)

    async def one() -> None:
        await monitor.check_once()

    loop = asyncio.new_event_loop()
    row(
        "whole check via to_thread (games" + (" + gpu)" if gpu else ")"),
        timed(lambda: loop.run_until_complete(one()), runs),
    )
    loop.close()
    if gpu is not None:
        gpu.close()


class _Clock:
    def monotonic(self) -> float:
        return time.monotonic()


if __name__ == "__main__":
    main()
