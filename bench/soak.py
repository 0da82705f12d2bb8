"""A long soak with faults: does the dream stay flat, bounded and whole for 10,000 frames?

A dream (hybrid, 128x128, ``frame_interval: 0``, keyframe every 4th frame, the frame cache on with
the ``features`` embedder, the viewer on a loopback port) runs in this process as ``dream-window
run`` builds it: a ``BackendSupervisor`` over the ComfyUI test server, ``FrameCacheService`` and
every service of ``build_services``. The test server runs as its own process on a fixed port
(``--step-delay 0``), wrapped by this file (``--serve``) so a signal can silence its WebSockets.
20 WebSocket clients hold ``/api/live`` open and read every message; one reads only every 0.5 s,
so its bounded per-page queue overflows. A thread keeps opening ``current_frame.png`` and decoding
it fully: any failure but "not there" (between a replace's unlink and rename on Windows) is a
partial frame.

Faults injected:

* **server restart** every ``--restart-every`` frames: SIGTERM, started again on the same port.
* **silent WebSocket**, once (mid-way between two restarts): the server keeps its sockets open
  and answers pings and HTTP, but sends no message for ``--silent-s`` seconds (the wrapper drops
  every outgoing WebSocket message while SIGUSR1 is in force; SIGUSR2 ends it).
* **full disk**, once: the output folder lives on a small tmpfs (``mount -t tmpfs``, needs root);
  a ballast file fills it for ``--full-s`` seconds (topped up, as history pruning frees space),
  then is deleted. Without the mount the fault is skipped and the output says why.

Every ``--restart-every`` frames it prints RSS, open file descriptors, threads, asyncio tasks
(this process's: the 20 clients and the bench's own tasks included), cache rows, history files,
the frame buffer, the controller's notes and WebSocket messages received. Per fault: the longest time without a published frame, frames
published during it, frames lost (the frames the rate since the previous fault would have made,
less those published; and the controller's own ``output.frames_lost`` where its snapshot has one),
and whether frames came again within 60 s of the fault ending. At the end: RSS after warm-up
(frame ``2 x --restart-every``) against the end, the spread after warm-up, the largest of each
count, crashes (the controller's task ended with an error, or before it was told to stop) and
partial frames.

Goal: RSS flat within 20 MB after warm-up, every count bounded, 0 crashes, 0 partial frames.

    .venv/bin/python bench/soak.py            # 10,000 frames, 9 restarts: ~5-8 min on 2 busy cores
    .venv/bin/python bench/soak.py --quick    # 1,500 frames, restart every 500: ~1-2 min smoke run

Runs as root for the tmpfs (else the full-disk fault is skipped). It prints numbers and asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import itertools
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO, free_port, log, temp_home, use_source

use_source()  # the working tree's code, whatever the venv installed


def serve(port: int, root: Path) -> None:
    """``--serve``: the ComfyUI test server until SIGTERM; SIGUSR1 silences its WebSockets (open,
    answering pings, sending nothing) until SIGUSR2. The test server has no such switch itself."""
    from comfyui_fake.server import ComfyTestServer
    from comfyui_fake.sockets import SocketHub

    silent = False
    send, send_bytes = SocketHub.send, SocketHub.send_bytes

    async def quiet_send(self: SocketHub, *args: Any, **kw: Any) -> None:
        if not silent:
            await send(self, *args, **kw)

    async def quiet_send_bytes(self: SocketHub, *args: Any, **kw: Any) -> None:
        if not silent:
            await send_bytes(self, *args, **kw)

    SocketHub.send, SocketHub.send_bytes = quiet_send, quiet_send_bytes

    def set_silent(value: bool) -> None:
        nonlocal silent
        silent = value

    async def main() -> None:
        server = ComfyTestServer(host="127.0.0.1", port=port, root=root, step_delay=0.0)
        await server.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, set_silent, True)
        loop.add_signal_handler(signal.SIGUSR2, set_silent, False)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(main())


if len(sys.argv) == 4 and sys.argv[1] == "--serve":
    serve(int(sys.argv[2]), Path(sys.argv[3]))
    sys.exit(0)

import aiohttp  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

HOME = temp_home("dw-soak-")

from dream_window.app import build_controller, build_services  # noqa: E402
from dream_window.cache.db import DB_FILE  # noqa: E402
from dream_window.cache.service import FrameCacheService  # noqa: E402
from dream_window.clock import SystemClock  # noqa: E402
from dream_window.config import load_config  # noqa: E402
from dream_window.dream.controller import DreamController  # noqa: E402
from dream_window.dream.output import CURRENT_FRAME, FRAMES_DIR  # noqa: E402
from dream_window.dream.supervisor import BackendSupervisor  # noqa: E402
from dream_window.events import FramePublished  # noqa: E402

RECOVER_S = 60.0


class Server:
    """The test server (wrapped by ``--serve``) in its own process, on one port for every start."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", str(self.port), str(root)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)

    async def answered(self, http: aiohttp.ClientSession, limit: float = 60.0) -> None:
        end = time.perf_counter() + limit
        while time.perf_counter() < end:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{self.url}/system_stats", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the ComfyUI test server at {self.url} did not answer within {limit:.0f} s")


class Disk:
    """The output folder on a small tmpfs of its own, and a ballast file to fill it."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        path.mkdir(parents=True)
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        self.mounted = done.returncode == 0
        self.why_not = (done.stderr or done.stdout).strip() or f"mount exited {done.returncode}"
        if self.mounted:
            atexit.register(subprocess.run, ["umount", "-l", str(path)], capture_output=True)
        self.ballast = path / "ballast.bin"

    def fill(self) -> None:
        """Append zeros until the filesystem says it is full."""
        chunk = b"\0" * (256 * 1024)
        with contextlib.suppress(OSError), self.ballast.open("ab") as f:
            while True:
                f.write(chunk)
                f.flush()
        with contextlib.suppress(OSError), self.ballast.open("ab") as f:  # the last few KB
            while True:
                f.write(b"\0" * 4096)
                f.flush()

    def empty(self) -> None:
        self.ballast.unlink(missing_ok=True)


class FrameReader(threading.Thread):
    """Opens and fully decodes ``current_frame.png`` as fast as it can, as a widget would."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True, name="frame-reader")
        self.path = path
        self.ok = 0
        self.missing = 0
        self.partial = 0
        self.errors: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                with Image.open(self.path) as im:
                    im.load()
                self.ok += 1
            except FileNotFoundError:
                self.missing += 1
            except Exception as exc:  # anything else is a frame a reader saw half-written
                self.partial += 1
                if len(self.errors) < 5:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.002)


@dataclass
class Client:
    """One page of the viewer holding ``/api/live`` open."""

    slow: bool
    messages: int = 0
    frames: int = 0
    closed: int = 0  # the viewer closed it (it reconnects)
    errors: int = 0
    close_codes: list[int | None] = field(default_factory=list)


async def run_client(http: aiohttp.ClientSession, url: str, client: Client) -> None:
    while True:
        try:
            async with http.ws_connect(url, heartbeat=20.0) as ws:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    client.messages += 1
                    if '"type": "frame"' in msg.data[:40]:
                        client.frames += 1
                    if client.slow:
                        await asyncio.sleep(0.5)
            client.closed += 1
            client.close_codes.append(ws.close_code)
        except (aiohttp.ClientError, OSError, TimeoutError):
            client.errors += 1
        await asyncio.sleep(0.5)


@dataclass
class Fault:
    name: str
    at_frame: int
    started: float  # perf_counter
    ended: float = 0.0  # the fault is over: server answering, sockets talking, ballast gone
    rate: float = 0.0  # frames/s since the previous fault (or the start)
    note: str = ""
    row: dict[str, Any] = field(default_factory=dict)


@dataclass
class Frames:
    times: list[float] = field(default_factory=list)
    tick: asyncio.Event = field(default_factory=asyncio.Event)

    def on_frame(self, ev: FramePublished) -> None:
        self.times.append(time.perf_counter())
        self.tick.set()

    async def reach(self, count: int, dream: asyncio.Task[None]) -> None:
        """Until ``count`` frames were published, or the dream ended."""
        while len(self.times) < count and not dream.done():
            self.tick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.tick.wait(), 0.5)

    def rate(self, since: float, until: float) -> float:
        """Frames per second published between the two times (the whole run when under 5 s)."""
        if until - since < 5.0 and self.times:
            since = self.times[0]
        ts = [x for x in self.times if since <= x <= until]
        return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else 0.0

    async def after(self, t: float, limit: float) -> float | None:
        """The perf_counter time of the first frame published after ``t``; None after ``limit`` s."""
        end = time.perf_counter() + limit
        while time.perf_counter() < end:
            later = [x for x in self.times[-2000:] if x > t]
            if later:
                return later[0]
            await asyncio.sleep(0.05)
        return None


def frames_lost(controller: DreamController) -> int | None:
    """The controller's count of frames not published in the current run of failures (its
    snapshot's ``output`` section has one only while writes fail: 0 otherwise); None without it."""
    out = controller.snapshot().get("output")
    if not isinstance(out, dict):
        return None  # code without the section
    lost = out.get("frames_lost", 0)
    return int(lost) if isinstance(lost, int) else 0


@dataclass
class LostWatch:
    """Polls ``frames_lost`` every 0.1 s: each run of failed writes as (first seen, last seen, count)."""

    runs: list[tuple[float, float, int]] = field(default_factory=list)
    seen_field: bool = False

    async def watch(self, controller: DreamController) -> None:
        current: tuple[float, float, int] | None = None
        while True:
            lost = frames_lost(controller)
            now = time.perf_counter()
            self.seen_field = self.seen_field or lost is not None
            if lost:
                current = (current[0] if current else now, now, lost)
            elif current is not None:
                self.runs.append(current)
                current = None
            await asyncio.sleep(0.1)

    def during(self, start: float, end: float) -> int | None:
        hits = [n for a, b, n in self.runs if b >= start and a <= end]
        return sum(hits) if hits else (0 if self.seen_field else None)


def write_config(root: Path, output: Path, url: str, viewer_port: int) -> Path:
    data: dict[str, Any] = {
        "system": {
            "backend": "comfyui",
            "comfyui_url": url,
            "output_dir": str(output),
            "cache_dir": str(root / "cache"),
        },
        "generation": {
            "mode": "hybrid",
            "model": "sd15",
            "width": 128,
            "height": 128,
            "frame_interval": 0,
            "keyframe_interval": 4,
            "history_size": 300,
            "cache": {"enabled": True, "embedder": "features"},
        },
        "comfyui": {"sd15_checkpoint": "tiny_sd15.safetensors", "probe_interval": 0.2},
        "game_detection": {"enabled": False},
        "viewer": {"enabled": True, "port": viewer_port},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cache_rows(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
    except sqlite3.Error:
        return None


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = HOME / "run"
        self.root.mkdir(parents=True)
        self.disk = Disk(self.root / "disk", args.disk_mb)
        self.output = self.disk.path / "output"
        self.server = Server(self.root / "server")
        atexit.register(self.server.stop)
        self.frames = Frames()
        self.faults: list[Fault] = []
        self.rows: list[dict[str, Any]] = []
        self.clients = [Client(slow=i == 0) for i in range(args.clients)]
        self.proc = psutil.Process()
        self.reader = FrameReader(self.output / CURRENT_FRAME)
        self.crash: str | None = None
        self.calm_since = 0.0
        self.lost = LostWatch()

    def sample(self, controller: DreamController, elapsed: float) -> dict[str, Any]:
        frames_dir = self.output / FRAMES_DIR
        history = sum(1 for _ in frames_dir.glob("frame_*.png")) if frames_dir.exists() else 0
        row = {
            "frames": len(self.frames.times),
            "elapsed_s": round(elapsed, 1),
            "rss_mb": round(self.proc.memory_info().rss / 2**20, 1),
            "fds": self.proc.num_fds(),
            "threads": self.proc.num_threads(),
            "tasks": len(asyncio.all_tasks()),
            "cache_rows": cache_rows(self.root / "cache" / DB_FILE),
            "history": history,
            "buffer": len(controller.buffer),
            "notes": len(controller.notes),
            "ws_msgs": sum(c.messages for c in self.clients),
            "ws_slow": self.clients[0].messages if self.clients else 0,
            "ws_closed": sum(c.closed + c.errors for c in self.clients),
            "frames_lost": sum(n for _, _, n in self.lost.runs) if self.lost.seen_field else None,
            "partial": self.reader.partial,
        }
        self.rows.append(row)
        return row

    def print_row(self, row: dict[str, Any]) -> None:
        if len(self.rows) == 1:
            print(
                f"{'frames':>7} {'s':>6} {'RSS MB':>7} {'fds':>4} {'thr':>4} {'tasks':>5} {'cache':>5} "
                f"{'hist':>5} {'buf':>4} {'notes':>5} {'WS msgs':>8} {'slow':>5} {'WS drop':>7} {'lost':>5} {'partial':>7}"
            )
        print(
            f"{row['frames']:>7} {row['elapsed_s']:>6.0f} {row['rss_mb']:>7.1f} {row['fds']:>4} "
            f"{row['threads']:>4} {row['tasks']:>5} {row['cache_rows']!s:>5} {row['history']:>5} "
            f"{row['buffer']!s:>4} {row['notes']:>5} {row['ws_msgs']:>8} {row['ws_slow']:>5} {row['ws_closed']:>7} "
            f"{row['frames_lost']!s:>5} {row['partial']:>7}",
            flush=True,
        )

    async def restart(self, http: aiohttp.ClientSession, controller: DreamController, at: int) -> None:
        fault = self.begin("server restart", at, controller)
        self.server.stop()
        self.server.start()
        await self.server.answered(http)
        self.end(fault, controller)

    async def silent(self, controller: DreamController, at: int) -> None:
        fault = self.begin("silent WebSocket", at, controller)
        self.server.signal(signal.SIGUSR1)
        await asyncio.sleep(self.args.silent_s)
        self.server.signal(signal.SIGUSR2)
        fault.note = f"{self.args.silent_s:g} s open, no messages"
        self.end(fault, controller)

    async def full_disk(self, controller: DreamController, at: int) -> None:
        if not self.disk.mounted:
            log(f"full disk skipped: cannot mount a tmpfs ({self.disk.why_not})")
            self.faults.append(
                Fault("full disk", at, time.perf_counter(), note="skipped: " + self.disk.why_not)
            )
            return
        fault = self.begin("full disk", at, controller)
        end = time.perf_counter() + self.args.full_s
        while time.perf_counter() < end:
            await asyncio.to_thread(self.disk.fill)  # again: pruned history frees space
            await asyncio.sleep(0.25)
        fault.note = f"{self.args.full_s:g} s full ({self.args.disk_mb} MB tmpfs)"
        self.disk.empty()
        self.end(fault, controller)

    def begin(self, name: str, at: int, controller: DreamController) -> Fault:
        log(f"  fault at frame {at}: {name}")
        now = time.perf_counter()
        fault = Fault(name, at, now, rate=self.frames.rate(self.calm_since, now))
        self.faults.append(fault)
        return fault

    def end(self, fault: Fault, controller: DreamController) -> None:
        fault.ended = time.perf_counter()
        self.calm_since = fault.ended + 5.0  # the rate of undisturbed frames starts after recovery

    async def settle(self, fault: Fault, controller: DreamController) -> None:
        """After the fault: when frames came again, and the longest stretch without one."""
        if fault.note.startswith("skipped"):
            fault.row = {"fault": fault.name, "at": fault.at_frame, "note": fault.note}
            return
        back = await self.frames.after(fault.ended, RECOVER_S)
        until = back if back is not None else time.perf_counter()
        await asyncio.sleep(0.5)  # the lost-frames watcher closes its run at its next poll
        window = [fault.started, *[t for t in self.frames.times if fault.started < t <= until], until]
        gap = max(b - a for a, b in itertools.pairwise(window))
        published = sum(1 for t in self.frames.times if fault.started < t <= until)
        expected = fault.rate * (until - fault.started)
        fault.row = {
            "fault": fault.name,
            "at": fault.at_frame,
            "fault_s": round(fault.ended - fault.started, 1),
            "max_gap_s": round(gap, 2),
            "published": published,
            "lost_est": max(0, round(expected - published)),
            "lost_ctrl": self.lost.during(fault.started, until + 0.5),
            "recovered": back is not None,
            "back_after_s": None if back is None else round(back - fault.ended, 2),
            "note": fault.note,
        }

    async def run(self) -> dict[str, Any]:
        args = self.args
        logging.basicConfig(level=logging.ERROR if args.verbose else logging.CRITICAL)
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self.server.start()
        await self.server.answered(http)
        viewer_port = free_port()
        config = load_config(write_config(self.root, self.output, self.server.url, viewer_port))
        clock = SystemClock()
        supervisor = BackendSupervisor.for_config(config, config.system.backend, clock=clock)
        await supervisor.start()
        frame_cache = FrameCacheService(config)
        controller = build_controller(
            config,
            supervisor.backend,
            supervisor=supervisor,
            clock=clock,
            fsync=False,
            frame_cache=frame_cache,
            services=build_services(config, frame_cache=frame_cache),
        )
        controller.events.subscribe(FramePublished, self.frames.on_frame)
        started = time.perf_counter()
        task = asyncio.create_task(controller.run(), name="dream")
        clients: list[asyncio.Task[None]] = []
        watcher: asyncio.Task[None] | None = None
        try:
            await self.frames.reach(1, task)
            watcher = asyncio.create_task(self.lost.watch(controller), name="lost-watch")
            self.reader.start()
            ws_url = f"http://127.0.0.1:{viewer_port}/api/live"
            clients = [
                asyncio.create_task(run_client(http, ws_url, c), name="ws-client") for c in self.clients
            ]
            every = args.restart_every
            silent_at = every * max(1, (args.frames // every) // 3) + every // 2
            full_at = every * max(1, (2 * (args.frames // every)) // 3) + every // 2
            plan = {m: "restart" for m in range(every, args.frames, every)}
            if full_at == silent_at:  # a short run: both fall between the same two restarts
                silent_at -= every // 4
            plan[silent_at] = "silent"
            plan[full_at] = "full"
            settling: list[asyncio.Task[None]] = []
            for mark in sorted({*plan, *range(every, args.frames + 1, every)}):
                await self.frames.reach(mark, task)
                if task.done():
                    break
                if mark % every == 0:
                    self.print_row(self.sample(controller, time.perf_counter() - started))
                kind = plan.get(mark)
                if kind == "restart":
                    await self.restart(http, controller, mark)
                elif kind == "silent":
                    await self.silent(controller, mark)
                elif kind == "full":
                    await self.full_disk(controller, mark)
                if kind:
                    settling.append(asyncio.create_task(self.settle(self.faults[-1], controller)))
            await asyncio.gather(*settling)
            if task.done():
                exc = task.exception()
                self.crash = f"the dream stopped by itself: {exc!r}" if exc else "the dream stopped by itself"
        finally:
            for c in [*clients, *([watcher] if watcher else [])]:  # first: noise once closing
                c.cancel()
            await asyncio.gather(*clients, *([watcher] if watcher else []), return_exceptions=True)
            controller.stop()
            try:
                await asyncio.wait_for(task, 60)
            except Exception as exc:
                if not self.crash:
                    self.crash = f"stopping raised {exc!r}"
            await supervisor.close()
            await http.close()
            self.reader.done.set()
            self.server.stop()
        return {
            "frames": len(self.frames.times),
            "took_s": round(time.perf_counter() - started, 1),
            "rows": self.rows,
            "faults": [f.row for f in self.faults],
            "crash": self.crash,
            "partial_frames": self.reader.partial,
            "partial_errors": self.reader.errors,
            "reads": {"ok": self.reader.ok, "missing": self.reader.missing},
            "clients": [vars(c) for c in self.clients],
            "disk": "tmpfs" if self.disk.mounted else f"no tmpfs: {self.disk.why_not}",
        }


def summarise(result: dict[str, Any], warm_frame: int) -> dict[str, Any]:
    rows = result["rows"]
    warm = [r for r in rows if r["frames"] >= warm_frame] or rows[-1:]
    rss = [r["rss_mb"] for r in warm]
    keys = ("fds", "threads", "tasks", "cache_rows", "history", "buffer", "notes")
    return {
        "rss_warm_mb": warm[0]["rss_mb"] if warm else None,
        "rss_end_mb": rows[-1]["rss_mb"] if rows else None,
        "rss_spread_mb": round(max(rss) - min(rss), 1) if rss else None,
        "warm_frame": warm[0]["frames"] if warm else None,
        "max": {k: max((r[k] for r in rows if r[k] is not None), default=None) for k in keys},
        "end": {k: rows[-1][k] for k in keys} if rows else {},
    }


def print_summary(result: dict[str, Any], s: dict[str, Any]) -> None:
    print(f"\n{result['frames']} frames in {result['took_s']:.0f} s; output on {result['disk']}")
    print(
        f"RSS: {s['rss_warm_mb']} MB at frame {s['warm_frame']} (warm), {s['rss_end_mb']} MB at the end; "
        f"spread after warm-up {s['rss_spread_mb']} MB (goal ≤ 20)"
    )
    print(
        "largest count (at the end): "
        + ", ".join(f"{k} {v} ({s['end'].get(k)})" for k, v in s["max"].items())
    )
    slow = result["clients"][0] if result["clients"] else {}
    fast = [c["frames"] for c in result["clients"][1:]]
    if fast:
        print(
            f"WebSocket clients: {len(result['clients'])}; frame messages per fast client "
            f"{min(fast)}-{max(fast)}; slow client {slow['frames']} frames, {slow['messages']} messages; "
            f"closed/failed connections {sum(c['closed'] + c['errors'] for c in result['clients'])}"
            f" (slow client: closed {slow['closed']}, codes {slow['close_codes']})"
        )
    print(
        f"crashes: {0 if not result['crash'] else 1}" + (f" ({result['crash']})" if result["crash"] else "")
    )
    reads = result["reads"]
    print(
        f"partial frames: {result['partial_frames']} in {reads['ok'] + result['partial_frames']} full reads "
        f"of {CURRENT_FRAME} ({reads['missing']} found missing)"
        + (f"; e.g. {result['partial_errors'][0]}" if result["partial_errors"] else "")
    )
    print("\nfaults")
    print(
        f"  {'fault':18} {'frame':>6} {'fault s':>7} {'max gap s':>9} {'published':>9} "
        f"{'lost (est)':>10} {'lost (ctrl)':>11} {'recovered':>10}  note"
    )
    for f in result["faults"]:
        if "fault_s" not in f:
            print(
                f"  {f['fault']:18} {f['at']:>6} {'-':>7} {'-':>9} {'-':>9} {'-':>10} {'-':>11} {'-':>10}  {f['note']}"
            )
            continue
        rec = f"yes {f['back_after_s']:.1f}s" if f["recovered"] else "NO"
        print(
            f"  {f['fault']:18} {f['at']:>6} {f['fault_s']:>7.1f} {f['max_gap_s']:>9.2f} {f['published']:>9} "
            f"{f['lost_est']:>10} {f['lost_ctrl']!s:>11} {rec:>10}  {f['note']}"
        )
    print(
        "  max gap: longest time without a published frame from the fault's start until frames came "
        "again;\n  lost (est): the frames the rate since the previous fault would have made, less those "
        "published;\n  lost (ctrl): the controller's output.frames_lost (frames not published) over the fault;\n"
        f"  recovered: a frame published within {RECOVER_S:g} s after the fault ended (after: seconds)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=10_000, help="frames to run (default 10,000)")
    ap.add_argument(
        "--restart-every", type=int, default=1_000, help="frames between restarts (default 1,000)"
    )
    ap.add_argument("--clients", type=int, default=20, help="WebSocket clients on /api/live (default 20)")
    ap.add_argument("--silent-s", type=float, default=15.0, help="s the WebSockets stay silent (default 15)")
    ap.add_argument("--full-s", type=float, default=10.0, help="s the disk stays full (default 10)")
    ap.add_argument("--disk-mb", type=int, default=64, help="size of the output tmpfs, MB (default 64)")
    ap.add_argument("--quick", action="store_true", help="1,500 frames, a restart every 500")
    ap.add_argument("--verbose", action="store_true", help="show the dream's errors (stderr)")
    ap.add_argument("--json-out", type=Path, help="also write the results here as JSON")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.restart_every = 1_500, 500
    print(
        f"soak: {args.frames} frames, hybrid 128x128, a server restart every {args.restart_every}, "
        f"{args.clients} WebSocket clients (1 slow); code from {sys.path[0]}",
        flush=True,
    )
    result = asyncio.run(Soak(args).run())
    s = summarise(result, 2 * args.restart_every)
    result["summary"] = s
    print_summary(result, s)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
