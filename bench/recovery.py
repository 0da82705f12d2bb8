"""How soon after ComfyUI comes back does the dream show its frames again? New code against old.

The ComfyUI test server runs as its own process on a fixed port, with a simulated model load
(``--model-load-delay``: the first prompt after a start takes that much longer, as a real
checkpoint load does). A dream (sd15, img2img, one ComfyUI prompt per frame) runs in this process.
Each cycle waits until frames flow, kills the server (SIGKILL, as a crash), leaves it down for
``--down`` seconds, starts it again on the same port and polls ``GET /system_stats`` every 20 ms.
A cycle's clock starts when the server first answers 200 and stops at the first ``FramePublished``
after that moment made by the new ComfyUI process: its ``backend`` names "ComfyUI (…)" (a dream
that fell back to the built-in engine meanwhile publishes other names), and it is published after
the first prompt in the new process's ``/history`` finished (so a frame made before the kill and
held back cannot count). A cycle with no such frame within
``--timeout`` seconds did not recover; after two such cycles in a row the run stops (the rest
count as not recovered).

Goal: every cycle recovers, within 2 s plus the model load.

The code before this change (``--baseline REF``, its ``src/`` taken with ``git archive``) runs the
same bench in a subprocess; both are printed side by side. The working tree's test server serves
both (the baseline's own has no ``--model-load-delay``).

    .venv/bin/python bench/recovery.py                            # ~4 min: 10 cycles new, 10 old
    .venv/bin/python bench/recovery.py --no-baseline --cycles 3   # ~30 s smoke run

A cycle takes about ``--down`` + server start-up (~1 s) + model load + the recovery itself + a
few frames. It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from _common import REPO, free_port, log, pct, rerun_on, temp_home, use_source

use_source()
HOME = temp_home("dw-recovery-")

from dream_window.app import build_controller  # noqa: E402
from dream_window.backends.comfyui import create_comfyui_backend  # noqa: E402
from dream_window.clock import SystemClock  # noqa: E402
from dream_window.config import DreamConfig, load_config  # noqa: E402
from dream_window.dream.controller import DreamController  # noqa: E402
from dream_window.events import FramePublished  # noqa: E402

Close = Callable[[], Awaitable[None]]


async def open_dream(config: DreamConfig) -> tuple[DreamController, Close]:
    """The dream as the product builds it, and how to close what it opened: the one place that
    changes when the product changes how it gets a backend that outlives ComfyUI going away."""
    try:
        from dream_window.dream.supervisor import BackendSupervisor
    except ImportError:  # the code before it: the backend's server pool probes ComfyUI back
        backend = create_comfyui_backend(config)
        await backend.start()
        return build_controller(config, backend, fsync=False), backend.close
    clock = SystemClock()
    supervisor = BackendSupervisor.for_config(config, config.system.backend, clock=clock)
    await supervisor.start()
    controller = build_controller(config, supervisor.backend, supervisor=supervisor, clock=clock, fsync=False)
    return controller, supervisor.close


class Server:
    """The working tree's ComfyUI test server, in its own process, on one port for every start."""

    def __init__(self, root: Path, *, step_delay: float, model_load: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "comfyui_fake", "--port", str(self.port), "--root", str(root)]
        self.cmd += ["--step-delay", str(step_delay), "--model-load-delay", str(model_load)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Spawn it; the perf_counter time it was spawned."""
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    async def answered(self, http: aiohttp.ClientSession, limit: float = 60.0) -> float:
        """The perf_counter time ``GET /system_stats`` first answered 200, polled every 20 ms."""
        end = time.perf_counter() + limit
        while time.perf_counter() < end:
            try:
                async with http.get(f"{self.url}/system_stats", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return time.perf_counter()
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.02)
        raise RuntimeError(f"the ComfyUI test server at {self.url} did not answer within {limit:.0f} s")

    async def first_success(self, http: aiohttp.ClientSession, limit: float) -> float | None:
        """The wall time (s) of this process's first finished prompt, from its own ``/history``
        (the protocol's record): no frame of this process can be older. None after ``limit`` s."""
        end = time.perf_counter() + limit
        while time.perf_counter() < end:
            try:
                async with http.get(f"{self.url}/history") as r:
                    history = await r.json() if r.status == 200 else {}
            except (aiohttp.ClientError, TimeoutError, ValueError):
                history = {}
            stamps = [
                data["timestamp"]
                for entry in history.values()
                for event, data in entry["status"]["messages"]
                if event == "execution_success"
            ]
            if stamps:
                return float(min(stamps)) / 1000.0
            await asyncio.sleep(0.05)
        return None


@dataclass
class Frames:
    """What the dream published: (perf_counter time, wall time, backend name)."""

    seen: list[tuple[float, float, str]] = field(default_factory=list)

    def on_frame(self, ev: FramePublished) -> None:
        self.seen.append((time.perf_counter(), time.time(), getattr(ev, "backend", "")))

    async def wait_comfy(
        self, after: float, count: int, limit: float, *, not_before_wall: float = 0.0
    ) -> float | None:
        """The perf_counter time of the ``count``-th ComfyUI frame published after ``after`` (and
        at wall time ``not_before_wall`` or later), polled every 5 ms; None after ``limit`` s."""
        end = time.perf_counter() + limit
        while time.perf_counter() < end:
            times = [
                at
                for at, wall, name in self.seen
                if at > after and wall >= not_before_wall and is_comfy(name)
            ]
            if len(times) >= count:
                return times[count - 1]
            await asyncio.sleep(0.005)
        return None


def is_comfy(backend: str) -> bool:
    return not backend or backend.startswith("ComfyUI")  # code without the field: ComfyUI only


def write_config(root: Path, url: str, interval: float) -> Path:
    data: dict[str, Any] = {
        "system": {
            "backend": "comfyui",
            "comfyui_url": url,
            "output_dir": str(root / "output"),
            "cache_dir": str(root / "cache"),
        },
        "generation": {
            "mode": "img2img",  # one ComfyUI prompt per frame: a frame is ComfyUI's or not
            "model": "sd15",
            "width": 64,
            "height": 128,
            "frame_interval": interval,
            "cache": {"enabled": False},
        },
        "comfyui": {"sd15_checkpoint": "tiny_sd15.safetensors"},
        "game_detection": {"enabled": False},
        "viewer": {"enabled": False},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def run_cycles(args: argparse.Namespace) -> dict[str, Any]:
    # The bench kills ComfyUI on purpose: the dream's "unreachable" errors are expected noise.
    logging.basicConfig(level=logging.CRITICAL)
    root = HOME / args.tag
    root.mkdir(parents=True)
    server = Server(root / "server", step_delay=args.step_delay, model_load=args.model_load)
    atexit.register(server.kill)
    frames = Frames()
    cycles: list[dict[str, float | None]] = []
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    try:
        server.start()
        await server.answered(http)
        config = load_config(write_config(root, server.url, args.interval))
        controller, close = await open_dream(config)
        controller.events.subscribe(FramePublished, frames.on_frame)
        task = asyncio.create_task(controller.run())
        try:
            flowing_since = 0.0
            misses = 0
            for i in range(args.cycles):
                if misses >= 2:
                    cycles.append({"startup_s": None, "recovery_s": None})
                    continue
                # Frames flow: a few from ComfyUI since the last recovery (or the start).
                if await frames.wait_comfy(flowing_since, 3, args.timeout) is None:
                    log(f"  [{args.tag}] cycle {i + 1}: no ComfyUI frames flowing before the kill")
                server.kill()
                await asyncio.sleep(args.down)
                spawned = server.start()
                answered = await server.answered(http)
                # A frame counts once the new process has finished a prompt: one published after the
                # server answered could still be one made before the kill, held back by the dream.
                made = await server.first_success(http, args.timeout)
                shown = None
                if made is not None:
                    left = args.timeout - (time.perf_counter() - answered)
                    shown = await frames.wait_comfy(answered, 1, left, not_before_wall=made)
                recovery = None if shown is None else shown - answered
                misses = misses + 1 if recovery is None else 0
                flowing_since = shown if shown is not None else answered
                cycles.append({"startup_s": answered - spawned, "recovery_s": recovery})
                text = (
                    "no ComfyUI frame (timed out)"
                    if recovery is None
                    else f"first ComfyUI frame {recovery:.2f} s later"
                )
                log(
                    f"  [{args.tag}] cycle {i + 1}/{args.cycles}: server answered "
                    f"{answered - spawned:.2f} s after its start; {text}"
                )
        finally:
            controller.stop()
            await task
            await close()
    finally:
        await http.close()
        server.kill()
    return {
        "cycles": cycles,
        "model_load": args.model_load,
        "down": args.down,
        "interval": args.interval,
        "timeout": args.timeout,
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    rec = [c["recovery_s"] for c in result["cycles"] if c["recovery_s"] is not None]
    up = [c["startup_s"] for c in result["cycles"] if c["startup_s"] is not None]
    return {
        "p50": pct(rec, 0.5) if rec else None,
        "max": max(rec) if rec else None,
        "recovered": len(rec),
        "cycles": len(result["cycles"]),
        "startup_p50": pct(up, 0.5) if up else None,
    }


def _num(value: float | None) -> str:
    return f"{value:6.2f}" if value is not None else f"{'-':>6}"


def print_table(rows: list[tuple[str, dict[str, Any]]], goal: float, timeout: float) -> None:
    print("\nseconds from the server answering to the first ComfyUI frame published")
    print(f"  {'code':24} {'p50':>6} {'max':>6} {'recovered':>10}  {'start-up p50':>12}")
    for name, s in rows:
        recovered = f"{s['recovered']}/{s['cycles']}"
        print(f"  {name:24} {_num(s['p50'])} {_num(s['max'])} {recovered:>10}  {_num(s['startup_p50']):>12}")
    new = rows[0][1]
    ok = new["recovered"] == new["cycles"] and new["max"] is not None and new["max"] <= goal
    print(
        f"  recovered: a ComfyUI frame within {timeout:g} s; start-up: server spawned to answering\n"
        f"  goal: every cycle, max ≤ {goal:.2f} s (2 s + the model load): {'pass' if ok else 'FAIL'}"
    )


def run_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """This bench again, in a subprocess, on ``args.baseline``'s src/."""
    flags: list[str] = []
    for flag in ("cycles", "model_load", "down", "interval", "step_delay", "timeout"):
        flags += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return dict(rerun_on(args.baseline, __file__, HOME, flags))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=10, help="server restarts per side (default 10)")
    ap.add_argument("--model-load", type=float, default=3.0, help="simulated model load, s (default 3)")
    ap.add_argument("--down", type=float, default=5.0, help="s the server stays down (default 5)")
    ap.add_argument("--interval", type=float, default=0.2, help="generation.frame_interval, s (default 0.2)")
    ap.add_argument("--step-delay", type=float, default=0.02, help="s per sampler step (default 0.02)")
    ap.add_argument("--timeout", type=float, default=60.0, help="s a cycle may take to recover (default 60)")
    ap.add_argument("--baseline", default="53ce72e", help="git ref of the code before the change")
    ap.add_argument("--no-baseline", action="store_true", help="measure the working tree only")
    ap.add_argument("--json-out", type=Path, help="also write the results here as JSON")
    ap.add_argument("--tag", default="new", help=argparse.SUPPRESS)
    args = ap.parse_args()
    print(
        f"recovery bench: {args.cycles} cycles, model load {args.model_load:g} s, down {args.down:g} s, "
        f"frame interval {args.interval:g} s"
        + ("" if args.no_baseline else f", baseline {args.baseline}")
        + f"; code from {sys.path[0]}",
        flush=True,
    )
    started = time.perf_counter()
    result = asyncio.run(run_cycles(args))
    if args.json_out:
        args.json_out.write_text(json.dumps(result))
    rows = [(f"{args.tag} (working tree)" if args.tag == "new" else args.tag, summary(result))]
    if not args.no_baseline:
        log(f"[old] running {args.baseline} in a subprocess ...")
        rows.append((f"old ({args.baseline})", summary(run_baseline(args))))
    print_table(rows, 2.0 + args.model_load, args.timeout)
    print(f"\ntook {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
