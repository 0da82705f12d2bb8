"""How light is dream-window when it runs all day, and how fast can it publish when asked?

Two measurements of the real ``dream-window run`` process (``python -m dream_window run --config``,
a child process of its own, so nothing of this script is counted), new code against old
(``--baseline``, the commit issue 16 started from), side by side in one run:

**Footprint at the default cadence** (``frame_interval: 1.5``, 256x512, hybrid, the frame cache,
the viewer and the system monitor on, as a user runs it), once with the built-in engine (it
renders the frames in the measured process) and once against the ComfyUI test server (its own
process, ``--step-delay 0``; the working tree's server for old and new code alike). After a
warm-up, the process's CPU time (user + system, all its threads) over ``--window`` seconds of
wall time is its share of one core; RSS is sampled every second (mean and max). The figure is
CPU *time*, so other jobs on a shared machine change it little.

**Where the time goes per frame**: the child runs the CLI with thread-CPU timers around the named
stages (``time.thread_time``, self time: a stage nested in another is counted once, in the
inner one), read at the start and end of the window:

    encode        the PNG of each published frame (output.encode_png)
    write         its history file and current_frame.png (atomic writes in dream/output.py)
    publish       the rest of OutputWriter.publish (label, pruning)
    status        status.json: the snapshot and its write (DreamController.snapshot, StatusWriter.write)
    events        the bus's listeners (EventBus.emit), on the loop
    embedding     the frame cache's embedder (features or CLIP)
    cache         the frame cache storing a frame: its own PNG, the file, the SQLite row
    rainmeter     status.ini, status.lua and the skin's frame copy
    quality       the quality service's decode + metrics of each frame
    monitor       the system monitor's checks (games, GPU, fullscreen, presence)
    coherence     colour coherence and the detail floor (dream/coherence.py) on made frames
    look          in-betweens matched to their keyframes' sharpness (interpolation/look.py)
    download      frames ComfyUI sent back, decoded from PNG (backends/comfyui/jobs.py)
    other         the rest of the process's CPU time: the event loop, HTTP and WebSockets (the
                  ComfyUI client, the viewer), the latent slerp, the built-in engine, timers

Each is CPU milliseconds per published frame and calls per frame. The timers cost about a
microsecond a call, a few per frame: nothing next to the milliseconds they measure.

**Fastest sustained publish rate** at 256x512 and 512x512 against the test server with
``frame_interval: 0`` (the cache and viewer on, the monitor off), frames/s over ``--rate-window``
seconds after a warm-up, with the CPU it costs (% of one core; the server's own process apart).
This one is wall-clock throughput: on a machine shared with other jobs it varies from run to
run, so old and new run back to back and the ratio is the figure to read. The test server makes
its frames with the built-in engine on the same CPU, so on a small machine it, not the dream, sets
the pace; "publish path" is what publishing a frame costs (encode, write, publish, status,
events) and its ceiling the rate one core could publish at if frames came free.

Goals (issue 16): <= 1 % of a core and <= 120 MB RSS with the ComfyUI backend at the defaults;
>= 60 frames/s at 256x512 on a 2-core machine with the cache and viewer on.

    .venv/bin/python bench/footprint.py                       # ~6 min: new and old, both backends
    .venv/bin/python bench/footprint.py --window 20 --rate-window 8 --no-baseline   # a quick look

It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# --- the child: the CLI with stage timers -----------------------------------------------------

CHILD = "--child"


def _child(counters_path: str, argv: list[str]) -> None:
    """``dream-window run`` as the CLI runs it, with stage timers; SIGUSR1 writes the counters to
    ``counters_path`` (the parent reads them at the start and end of its window)."""
    import threading
    from collections import defaultdict
    from collections.abc import Callable
    from typing import Any as _Any

    from dream_window.cli import main

    cpu: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    local = threading.local()

    def timed(stage: str, fn: Callable[..., _Any]) -> Callable[..., _Any]:
        def wrapper(*args: _Any, **kw: _Any) -> _Any:
            stack: list[float] = getattr(local, "stack", None) or []
            local.stack = stack
            stack.append(0.0)  # CPU of stages nested in this one, to leave out of its own
            t0 = time.thread_time()
            try:
                return fn(*args, **kw)
            finally:
                spent = time.thread_time() - t0
                nested = stack.pop()
                cpu[stage] += spent - nested
                calls[stage] += 1
                if stack:
                    stack[-1] += spent

        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapper

    def wrap(module_name: str, owner: str | None, attr: str, stage: str) -> None:
        """Wrap ``module.attr`` or ``module.owner.attr`` where the code under measurement has it."""
        try:
            module = __import__(module_name, fromlist=["_"])
        except ImportError:
            return
        target = getattr(module, owner, None) if owner else module
        if target is None or not hasattr(target, attr):
            return
        setattr(target, attr, timed(stage, getattr(target, attr)))

    file_ops = ("atomic_write_bytes", "atomic_write_text", "atomic_write_json")
    for fn in file_ops:
        wrap("dream_window.dream.output", None, fn, "write")
        wrap("dream_window.dream.status", None, fn, "status")
        wrap("dream_window.rainmeter.status_ini", None, fn, "rainmeter")
    wrap("dream_window.dream.output", None, "encode_png", "encode")
    wrap("dream_window.dream.output", "OutputWriter", "publish", "publish")
    wrap("dream_window.dream.controller", "DreamController", "snapshot", "status")
    wrap("dream_window.dream.status", "StatusWriter", "write", "status")
    wrap("dream_window.events", "EventBus", "emit", "events")
    wrap("dream_window.cache.embedders", "FeatureEmbedder", "embed", "embedding")
    wrap("dream_window.cache.embedders", "CLIPEmbedder", "embed", "embedding")
    wrap("dream_window.cache.manager", "CacheManager", "add", "cache")
    wrap("dream_window.rainmeter.status_ini", "RainmeterWriter", "_write", "rainmeter")
    wrap("dream_window.quality.service", "QualityService", "_measure", "quality")
    wrap("dream_window.monitor.system_monitor", "SystemMonitor", "_read_all", "monitor")
    # The making of frames, in this process: colour coherence and the detail floor, in-betweens
    # matched to their keyframes, and the frames ComfyUI sends back decoded.
    wrap("dream_window.dream.coherence", "ColourCoherence", "cohere", "coherence")
    wrap("dream_window.dream.coherence", "ColourCoherence", "hold_detail", "coherence")
    wrap("dream_window.interpolation.inbetweens", None, "match_look", "look")
    wrap("dream_window.backends.comfyui.jobs", None, "_png", "download")

    def dump(_sig: int, _frame: object) -> None:
        data = {"cpu": dict(cpu), "calls": dict(calls), "process_cpu": sum(os.times()[:2])}
        tmp = counters_path + ".tmp"
        Path(tmp).write_text(json.dumps(data))
        os.replace(tmp, counters_path)

    signal.signal(signal.SIGUSR1, dump)
    main(argv, prog_name="dream-window")


if len(sys.argv) >= 3 and sys.argv[1] == CHILD:
    _child(sys.argv[2], sys.argv[3:])
    sys.exit(0)


# --- the parent -------------------------------------------------------------------------------

import asyncio  # noqa: E402

import psutil  # noqa: E402
import yaml  # noqa: E402
from _common import TestServerProcess, free_port, log, rerun_on, temp_home, use_source  # noqa: E402

SRC = use_source()
HOME = temp_home("dw-footprint-")
BASELINE = "f706f6a"  # HEAD when issue 16's work began
# The publishing of a frame itself, whatever made it: what bounds the rate once frames come free.
PUBLISH_PATH = ("encode", "write", "publish", "status", "events")
STAGES = (
    "encode",
    "write",
    "publish",
    "status",
    "events",
    "embedding",
    "cache",
    "rainmeter",
    "quality",
    "monitor",
    "coherence",
    "look",
    "download",
)


def write_config(
    folder: Path, *, backend: str, url: str, size: tuple[int, int], interval: float, monitor: bool
) -> Path:
    folder.mkdir(parents=True)
    data: dict[str, Any] = {
        "system": {
            "backend": backend,
            "comfyui_url": url,
            "output_dir": str(folder / "output"),
            "cache_dir": str(folder / "cache"),
            "log_dir": str(folder / "logs"),
            "log_level": "warning",
        },
        "generation": {
            "mode": "hybrid",
            "model": "sd15",
            "width": size[0],
            "height": size[1],
            "frame_interval": interval,
            # The features embedder: CLIP's weights are not in an offline bench's cache, and
            # a user without the ml extra gets this one.
            "cache": {"enabled": True, "embedder": "features"},
        },
        "comfyui": {"sd15_checkpoint": "tiny_sd15.safetensors"},
        "viewer": {"enabled": True, "port": free_port()},
        "game_detection": {"enabled": monitor},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Dream:
    """``dream-window run`` in a child process with the stage timers."""

    def __init__(self, config: Path) -> None:
        self.counters = config.parent / "counters.json"
        self.status = config.parent / "output" / "status.json"
        env = {**os.environ, "PYTHONPATH": SRC}
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            CHILD,
            str(self.counters),
            "run",
            "--config",
            str(config),
        ]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.ps = psutil.Process(self.proc.pid)

    def frame_count(self) -> int:
        try:
            return int(json.loads(self.status.read_text()).get("frame_count") or 0)
        except (OSError, ValueError):
            return 0

    async def until_frames(self, n: int, limit: float = 300.0) -> None:
        end = time.monotonic() + limit
        while self.frame_count() < n:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"dream-window exited {self.proc.returncode}: {err[-2000:]}")
            if time.monotonic() > end:
                raise RuntimeError(f"dream-window published fewer than {n} frames in {limit:.0f} s")
            await asyncio.sleep(0.2)

    async def counters_now(self) -> dict[str, Any]:
        self.counters.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        for _ in range(200):
            if self.counters.exists():
                return dict(json.loads(self.counters.read_text()))
            await asyncio.sleep(0.05)
        raise RuntimeError("the child did not write its counters")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


async def measure(config: Path, *, warm_frames: int, warm_s: float, window: float) -> dict[str, Any]:
    """CPU share, RSS and the per-frame stages of one dream over ``window`` seconds."""
    dream = Dream(config)
    try:
        await dream.until_frames(warm_frames)
        await asyncio.sleep(warm_s)
        before = await dream.counters_now()
        cpu0, t0 = dream.ps.cpu_times(), time.monotonic()
        rss: list[int] = []
        while time.monotonic() - t0 < window:
            rss.append(dream.ps.memory_info().rss)
            await asyncio.sleep(1.0)
        after = await dream.counters_now()
        cpu1, t1 = dream.ps.cpu_times(), time.monotonic()
    finally:
        dream.stop()
    frames = after["calls"].get("publish", 0) - before["calls"].get("publish", 0)
    used = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    stages = {}
    for stage in STAGES:
        spent = after["cpu"].get(stage, 0.0) - before["cpu"].get(stage, 0.0)
        n = after["calls"].get(stage, 0) - before["calls"].get(stage, 0)
        stages[stage] = {"ms": 1000 * spent / max(frames, 1), "calls": n / max(frames, 1)}
    process = after["process_cpu"] - before["process_cpu"]
    path_ms = sum(stages[s]["ms"] for s in PUBLISH_PATH)
    stages["other"] = {
        "ms": 1000
        * (process - sum(v["ms"] for v in stages.values()) * max(frames, 1) / 1000)
        / max(frames, 1),
        "calls": 0.0,
    }
    return {
        "cpu_pct": 100 * used / (t1 - t0),
        "rss_mb": sum(rss) / len(rss) / 2**20,
        "rss_max_mb": max(rss) / 2**20,
        "fps": frames / (t1 - t0),
        "frames": frames,
        "ms_per_frame": 1000 * process / max(frames, 1),
        "path_ms": path_ms,
        "path_fps": 1000 / path_ms if path_ms > 0 else 0.0,
        "stages": stages,
    }


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    server = TestServerProcess(HOME / "server")
    try:
        await server.wait_up()
        for backend in args.backends:
            log(f"[{args.tag}] footprint, {backend}, {args.window:.0f} s window")
            cfg = write_config(
                HOME / f"{args.tag}-idle-{backend}",
                backend=backend,
                url=server.url,
                size=(256, 512),
                interval=1.5,
                monitor=True,
            )
            results[f"idle-{backend}"] = await measure(
                cfg, warm_frames=3, warm_s=args.warmup, window=args.window
            )
        for w, h in args.sizes:
            log(f"[{args.tag}] fastest rate, {w}x{h}, {args.rate_window:.0f} s window")
            cfg = write_config(
                HOME / f"{args.tag}-rate-{w}x{h}",
                backend="comfyui",
                url=server.url,
                size=(w, h),
                interval=0.0,
                monitor=False,
            )
            results[f"rate-{w}x{h}"] = await measure(cfg, warm_frames=20, warm_s=2.0, window=args.rate_window)
    finally:
        server.stop()
    return results


def size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def show(new: dict[str, Any], old: dict[str, Any] | None) -> None:
    def row(label: str, key: str, fmt: str, a: dict[str, Any], b: dict[str, Any] | None) -> str:
        x = a[key]
        if b is None:
            return f"  {label:<22} {fmt.format(x):>10}"
        y = b[key]
        ratio = f"{x / y:6.2f}x" if y else "    -"
        return f"  {label:<22} {fmt.format(y):>10} {fmt.format(x):>10}   {ratio}"

    head = f"  {'':<22} {'old':>10} {'new':>10}   new/old" if old else f"  {'':<22} {'new':>10}"
    for key, res in new.items():
        prev = old.get(key) if old else None
        kind, _, what = key.partition("-")
        title = (
            f"footprint at the default cadence (1.5 s, 256x512), backend {what}"
            if kind == "idle"
            else f"fastest sustained publish rate, {what}, frame_interval 0, ComfyUI test server"
        )
        print(f"\n{title}")
        print(head)
        if kind == "idle":
            print(row("CPU, % of one core", "cpu_pct", "{:.2f}", res, prev))
            print(row("RSS mean, MB", "rss_mb", "{:.1f}", res, prev))
            print(row("RSS max, MB", "rss_max_mb", "{:.1f}", res, prev))
        else:
            print(row("frames/s", "fps", "{:.1f}", res, prev))
            print(row("CPU, % of one core", "cpu_pct", "{:.1f}", res, prev))
        print(row("frames in the window", "frames", "{:d}", res, prev))
        print(row("CPU ms per frame", "ms_per_frame", "{:.2f}", res, prev))
        print(row("publish path ms/frame", "path_ms", "{:.2f}", res, prev))
        print(row("  its ceiling, frames/s", "path_fps", "{:.0f}", res, prev))
        print("  where the time goes (CPU ms per frame; calls per frame):")
        for stage in (*STAGES, "other"):
            a = res["stages"][stage]
            b = prev["stages"][stage] if prev else None
            calls = f"{a['calls']:.2f}" if b is None else f"{b['calls']:.2f} -> {a['calls']:.2f}"
            ms = f"{a['ms']:8.2f}" if b is None else f"{b['ms']:8.2f} {a['ms']:10.2f}"
            print(f"    {stage:<20} {ms}   calls {calls}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--window", type=float, default=45.0, help="seconds measured at the default cadence")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds after the third frame")
    p.add_argument("--rate-window", type=float, default=12.0, help="seconds measured at frame_interval 0")
    p.add_argument("--backends", nargs="+", default=["builtin", "comfyui"], choices=["builtin", "comfyui"])
    p.add_argument("--sizes", nargs="*", type=size, default=[(256, 512), (512, 512)])
    p.add_argument("--baseline", default=BASELINE, help="the git ref to compare with")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--tag", default="new")
    args = p.parse_args()

    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}")
    new = asyncio.run(run_all(args))
    if args.json_out:
        args.json_out.write_text(json.dumps(new))
        return
    old = None
    if not args.no_baseline:
        argv = [
            "--window",
            str(args.window),
            "--warmup",
            str(args.warmup),
            "--rate-window",
            str(args.rate_window),
        ]
        argv += ["--backends", *args.backends, "--sizes", *[f"{w}x{h}" for w, h in args.sizes]]
        log(f"rerunning on {args.baseline}")
        old = rerun_on(args.baseline, __file__, HOME, argv)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"new: the working tree; old: {args.baseline}" if old else "new: the working tree")
    show(new, old)


if __name__ == "__main__":
    main()
