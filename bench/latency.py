"""How long until the screen answers? Typed prompt, skip and resume, new code against old.

For each setup (the built-in engine, and the ComfyUI test server, each with keyframes that take
0.2 s and 1.5 s) a dream runs in this process with the viewer on a loopback port, and is steered
through the viewer's HTTP control API as a user would. A trial's clock starts when the API call's
response has arrived and stops at the first published frame that carries the new prompt (for
resume: the first frame after it), measured two ways:

* **png**: ``current_frame.png`` polled every 10 ms and read back as a widget would; the frame's
  PNG text (``prompt``, ``frame``) says what it shows. Code that writes no PNG text has no png
  measure; the table says so.
* **event**: the controller's ``FramePublished`` events, in process (works on any version).

Also per setup: ComfyUI prompts that started executing after a typed prompt or skip although
their text was not the new prompt (work for an abandoned plan, read from the test server's
``/history``; goal 0), and the cadence jitter (stdev of publish intervals over ~30 undisturbed
frames; goal ≤ 10 % of the interval). Goal for latency: p95 ≤ interval + keyframe + 0.3 s.

The code before this change (``--baseline REF``, its ``src/`` taken with ``git archive``) runs the
same bench in a subprocess with fewer trials (a change took ~23 intervals to show there: 16
buffered frames plus the batch waiting to go in); both are printed side by side. The same ComfyUI
test server (the working tree's) serves both.

    .venv/bin/python bench/latency.py            # ~50 min: ~20 new + ~30 old (4 setups, 1.5 s frames)
    .venv/bin/python bench/latency.py --quick    # ~8 min smoke run: 0.5 s frames, 5 and 2 trials
    .venv/bin/python bench/latency.py --no-baseline --backends comfyui --keyframe 1.5

It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from _common import TestServerProcess, free_port, log, pct, rerun_on, temp_home, use_source
from PIL import Image

use_source()
HOME = temp_home("dw-latency-")

from dream_window.app import build_controller  # noqa: E402
from dream_window.backends.builtin import BuiltinEngine  # noqa: E402
from dream_window.backends.comfyui import create_comfyui_backend  # noqa: E402
from dream_window.config import PromptsConfig, load_config  # noqa: E402
from dream_window.events import FramePublished  # noqa: E402
from dream_window.web import ViewerService  # noqa: E402

ACTIONS = ("prompt", "skip", "resume")
PROMPTS = ["ocean at night", "forest in mist", "crystal cathedral", "lavender fields", "a teapot", "dunes"]


class SlowKeyframes:
    """The built-in engine with every keyframe taking ``delay`` longer, as a model on a GPU would;
    everything else is the engine's own."""

    def __init__(self, engine: BuiltinEngine, delay: float) -> None:
        self._engine = engine
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def txt2img(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(self._delay)
        return await self._engine.txt2img(*args, **kwargs)

    async def img2img(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(self._delay)
        return await self._engine.img2img(*args, **kwargs)


@dataclass
class Watch:
    """What was published: bus events and what a widget reading current_frame.png saw."""

    path: Path
    events: list[tuple[float, int, str]] = field(default_factory=list)  # (t, index, prompt)
    pngs: list[tuple[float, int | None, str | None]] = field(default_factory=list)  # (t, frame, prompt)
    stop: threading.Event = field(default_factory=threading.Event)

    def on_frame(self, ev: FramePublished) -> None:
        self.events.append((time.perf_counter(), ev.index, ev.prompt))

    def poll(self) -> None:
        seen: tuple[int, int, int] | None = None
        while not self.stop.wait(0.01):
            try:
                st = self.path.stat()
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                if key == seen:
                    continue
                with Image.open(self.path) as img:
                    text = dict(getattr(img, "text", {}))
            except (OSError, SyntaxError, ValueError):
                continue  # not there yet, or caught mid-replace: read it on the next poll
            seen = key
            frame = text.get("frame")
            self.pngs.append(
                (time.perf_counter(), int(frame) if frame and frame.isdigit() else None, text.get("prompt"))
            )

    @property
    def has_png_text(self) -> bool:
        return any(p is not None for _, _, p in self.pngs)

    def last_index(self) -> int:
        return self.events[-1][1] if self.events else 0

    def last_png_frame(self) -> int:
        return max((f for _, f, _ in self.pngs if f is not None), default=0)


async def until(pred: Any, limit: float) -> Any:
    """The first truthy ``pred()``, polled every 5 ms; None after ``limit`` seconds."""
    end = time.perf_counter() + limit
    while time.perf_counter() < end:
        got = pred()
        if got:
            return got
        await asyncio.sleep(0.005)
    return None


def stats(values: list[float | None]) -> str:
    """p50 p95 max of the trials that saw their frame, and how many timed out."""
    ok = [v for v in values if v is not None]
    note = f" ({len(values) - len(ok)} timed out)" if len(ok) < len(values) else ""
    if not ok:
        return f"{'-':>6} {'-':>6} {'-':>6}{note}"
    return f"{pct(ok, 0.5):6.2f} {pct(ok, 0.95):6.2f} {max(ok):6.2f}{note}"


def write_config(root: Path, backend: str, url: str, interval: float) -> Path:
    data: dict[str, Any] = {
        "system": {"output_dir": str(root / "output"), "cache_dir": str(root / "cache")},
        "generation": {
            "mode": "hybrid",
            "width": 128,
            "height": 192,
            "frame_interval": interval,
            "cache": {"enabled": False},
        },
        "prompts": {"list": PROMPTS, "rotate_every_frames": 0},
        "game_detection": {"enabled": False},
        "viewer": {"enabled": True, "port": free_port()},
    }
    if "hold_minutes" in PromptsConfig.model_fields:  # newer code: a typed prompt holds until skipped
        data["prompts"]["hold_minutes"] = 0
    if backend == "comfyui":
        data["system"] |= {"backend": "comfyui", "comfyui_url": url}
        data["generation"]["model"] = "sd15"
        data["comfyui"] = {"sd15_checkpoint": "tiny_sd15.safetensors"}
    else:
        data["system"]["backend"] = "builtin"
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def count_abandoned(history: dict[str, Any], windows: list[tuple[float, float, str]]) -> dict[str, int]:
    """Prompts with text that started in a trial's window (call returned .. next call) for another
    prompt than the trial's: ``success`` ran to the end for nothing, ``interrupted`` were stopped."""
    out = {"success": 0, "interrupted": 0}
    for entry in history.values():
        graph = entry["prompt"][2]
        texts = {
            n["inputs"]["text"]
            for n in graph.values()
            if "CLIPTextEncode" in str(n.get("class_type")) and isinstance(n["inputs"].get("text"), str)
        }
        texts.discard("")
        msgs = {m[0]: m[1] for m in entry["status"]["messages"]}
        start = msgs.get("execution_start", {}).get("timestamp")
        if not texts or start is None:
            continue  # encode/decode graphs carry no prompt; never-started ones cost nothing
        for t0, t1, prompt in windows:
            if t0 <= start / 1000.0 < t1 and prompt not in texts:
                out["success"] += "execution_success" in msgs
                out["interrupted"] += "execution_interrupted" in msgs
    return out


class Steer:
    """Drives one running dream through its viewer API and times what it publishes."""

    def __init__(self, http: aiohttp.ClientSession, api: str, watch: Watch, interval: float) -> None:
        self.http, self.api, self.watch, self.interval = http, api, watch, interval

    async def call(self, route: str, body: dict[str, str]) -> dict[str, Any]:
        async with self.http.post(f"{self.api}/{route}", json=body) as r:
            r.raise_for_status()
            return dict(await r.json())

    async def trial(self, action: str, i: int, limit: float) -> tuple[float | None, float | None, str, float]:
        """(event latency, png latency, the prompt asked for, wall time the call returned); a latency
        is None where the wait timed out."""
        w = self.watch
        if action == "resume":
            await self.call("pause", {})
            await asyncio.sleep(self.interval)
        last_ev, last_png, want = w.last_index(), w.last_png_frame(), ""
        sent = time.perf_counter()
        if action == "prompt":
            want = f"a lighthouse in fog, trial {i + 1}"
            await self.call("prompt", {"prompt": want})
        elif action == "skip":
            body = await self.call("skip", {})
            want = str(body.get("next_prompt") or body["current_prompt"])
            if w.events and w.events[-1][2] == want:
                log(f"  skip named the prompt already on screen ({want!r}): counted as timed out")
                return None, None, "", time.time()
        else:
            await self.call("resume", {})
        t0, returned = time.perf_counter(), time.time()

        def ev_hit() -> tuple[float, int, str] | None:
            if want:
                return next((e for e in w.events if e[0] >= sent and e[2] == want), None)
            return next((e for e in w.events if e[1] > last_ev), None)

        def png_hit() -> tuple[float, int | None, str | None] | None:
            if want:
                return next((p for p in w.pngs if p[0] >= sent and p[2] == want), None)
            # By the frame number in the PNG text; without one, any file replaced after the call.
            return next((p for p in w.pngs if (p[0] > t0 if p[1] is None else p[1] > last_png)), None)

        ev = await until(ev_hit, limit)
        png = await until(png_hit, 1.0 if ev is None else limit) if w.has_png_text else None
        # Settle: one more frame, so the next trial starts from a steady dream.
        mark = w.last_index()
        await until(lambda: w.last_index() > mark, limit)
        return (ev[0] - t0 if ev else None), (png[0] - t0 if png else None), want, returned


async def run_setup(backend: str, keyframe: float, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    interval = args.interval
    timeout = max(60.0, 30 * interval)  # old code: ~16 buffered frames before a change shows
    server: TestServerProcess | None = None
    http = aiohttp.ClientSession()
    history: dict[str, Any] = {}
    lat: dict[str, dict[str, list[float | None]]] = {a: {"event": [], "png": []} for a in ACTIONS}
    windows: list[tuple[float, float, str]] = []  # (call returned, next call, prompt), wall clock
    try:
        if backend == "comfyui":
            server = TestServerProcess(
                root / "server", step_delay=keyframe / 4
            )  # generation.steps default: 4
            await server.wait_up()
        config = load_config(write_config(root, backend, server.url if server else "", interval))
        engine: Any = create_comfyui_backend(config) if server else SlowKeyframes(BuiltinEngine(), keyframe)
        await engine.start()
        controller = build_controller(config, engine, services=[ViewerService(config)], fsync=False)
        watch = Watch(config.output_dir / "current_frame.png")
        controller.events.subscribe(FramePublished, watch.on_frame)
        poller = threading.Thread(target=watch.poll, daemon=True)
        poller.start()
        task = asyncio.create_task(controller.run())
        steer = Steer(http, f"http://127.0.0.1:{config.viewer.port}/api", watch, interval)
        try:
            # Cadence: ~30 frames undisturbed (the first 3 are start-up, not cadence).
            wait = timeout + 33 * interval
            if await until(lambda: len(watch.events) >= 33, wait) is None:
                raise RuntimeError(f"{backend}: fewer than 33 frames published in {wait:.0f} s")
            times = [t for t, _, _ in watch.events[3:33]]
            jitter = statistics.stdev(b - a for a, b in itertools.pairwise(times))
            for action in ACTIONS:
                for i in range(args.trials):
                    if windows and windows[-1][1] == float("inf"):
                        windows[-1] = (windows[-1][0], time.time(), windows[-1][2])
                    ev, png, want, returned = await steer.trial(action, i, timeout)
                    if want:
                        windows.append((returned, float("inf"), want))
                    lat[action]["event"].append(ev)
                    lat[action]["png"].append(png)
                    if server is not None:  # read after every trial: servers prune old entries
                        async with http.get(f"{server.url}/history") as r:
                            history.update(await r.json())
                    shown = "timed out" if ev is None else f"{ev:.2f} s"
                    log(f"  [{args.tag}] {backend} {keyframe:g}s {action} {i + 1}/{args.trials}: {shown}")
        finally:
            controller.stop()
            await task
            watch.stop.set()
            poller.join(2)
            await engine.close()
    finally:
        await http.close()
        if server is not None:
            server.stop()
    return {
        "backend": backend,
        "keyframe": keyframe,
        "interval": interval,
        "measure": "png" if watch.has_png_text else "event",
        "latency": lat,
        "abandoned": count_abandoned(history, windows) if server is not None else None,
        "jitter_ms": jitter * 1000.0,
        "jitter_pct": 100.0 * jitter / interval if interval else 0.0,
    }


async def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    logging.basicConfig(level=logging.ERROR)  # the test server starting up is 'unreachable' a moment
    results = []
    for backend in args.backends:
        for keyframe in args.keyframe:
            log(f"[{args.tag}] {backend}, keyframe {keyframe:g} s, interval {args.interval:g} s ...")
            root = HOME / f"{backend}-{keyframe:g}"
            root.mkdir(parents=True)
            results.append(await run_setup(backend, keyframe, args, root))
    return results


def label(r: dict[str, Any]) -> str:
    return f"{r['backend']} {r['keyframe']:g}s"


def print_run(results: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}: latency in s from the API call returning (p50 p95 max)")
    for r in results:
        for a in ACTIONS:
            both = f"png {stats(r['latency'][a]['png'])}   " if r["measure"] == "png" else "png n/a   "
            print(f"  {label(r):14} {a:7} {both}event {stats(r['latency'][a]['event'])}")
    for r in results:
        ab = r["abandoned"]
        ab_text = f"abandoned prompts run {ab['success']}, interrupted {ab['interrupted']}" if ab else ""
        print(f"  {label(r):14} jitter {r['jitter_ms']:.1f} ms ({r['jitter_pct']:.1f} %)  {ab_text}")


def print_side_by_side(new: list[dict[str, Any]], old: list[dict[str, Any]], ref: str) -> None:
    olds = {label(r): r for r in old}
    print(f"\nnew (working tree) vs old ({ref}); latency s, p50 p95 max; goal: interval + keyframe + 0.3 s")
    print(f"  {'setup':14} {'action':7} {'new':>20}   {'old':>20}   {'goal':>5}  p95 ≤ goal")
    for r in new:
        o = olds.get(label(r))
        goal = r["interval"] + r["keyframe"] + 0.3
        for a in ACTIONS:
            vals = r["latency"][a][r["measure"]]
            ok = [v for v in vals if v is not None]
            verdict = "pass" if ok and len(ok) == len(vals) and pct(ok, 0.95) <= goal else "FAIL"
            old_s = stats(o["latency"][a][o["measure"]]) if o else "-"
            print(f"  {label(r):14} {a:7} {stats(vals):>20}   {old_s:>20}   {goal:5.2f}  {verdict}")
    used = {w: "/".join(sorted({r["measure"] for r in rs})) for w, rs in (("new", new), ("old", old))}
    print(f"  measured by: new {used['new']}, old {used['old']} (event where frames carry no PNG text)")
    print("\nComfyUI prompts executed for an abandoned plan (goal 0): run to the end / interrupted")
    for r in new:
        if r["abandoned"] is not None:
            o = olds.get(label(r))
            oa = f"{o['abandoned']['success']} / {o['abandoned']['interrupted']}" if o else "-"
            print(
                f"  {label(r):14} new {r['abandoned']['success']} / {r['abandoned']['interrupted']}   old {oa}"
            )
    print("\ncadence jitter, stdev of publish intervals (goal ≤ 10 % of the interval)")
    for r in new:
        o = olds.get(label(r))
        oj = f"{o['jitter_ms']:.1f} ms ({o['jitter_pct']:.1f} %)" if o else "-"
        verdict = "pass" if r["jitter_pct"] <= 10.0 else "FAIL"
        print(f"  {label(r):14} new {r['jitter_ms']:.1f} ms ({r['jitter_pct']:.1f} %)   old {oj}   {verdict}")


def run_baseline(args: argparse.Namespace) -> list[dict[str, Any]]:
    """This bench again, in a subprocess, on ``args.baseline``'s src/."""
    flags = ["--interval", str(args.interval), "--trials", str(args.baseline_trials)]
    flags += ["--keyframe", *map(str, args.keyframe), "--backends", *args.backends]
    return list(rerun_on(args.baseline, __file__, HOME, flags)["results"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interval", type=float, help="generation.frame_interval, s (default 1.5)")
    ap.add_argument("--keyframe", type=float, nargs="+", default=[0.2, 1.5], help="s per keyframe")
    ap.add_argument("--backends", nargs="+", choices=["builtin", "comfyui"], default=["builtin", "comfyui"])
    ap.add_argument("--trials", type=int, help="trials per action, new code (default 20)")
    ap.add_argument("--baseline-trials", type=int, help="trials per action, old code (default 5)")
    ap.add_argument("--baseline", default="7877e58", help="git ref of the code before the change")
    ap.add_argument("--no-baseline", action="store_true", help="measure the working tree only")
    ap.add_argument("--quick", action="store_true", help="smoke run: defaults interval 0.5, trials 5 and 2")
    ap.add_argument("--json-out", type=Path, help="also write the results here as JSON")
    ap.add_argument("--tag", default="new", help=argparse.SUPPRESS)
    args = ap.parse_args()
    quick = (0.5, 5, 2) if args.quick else (1.5, 20, 5)  # explicit flags win over --quick
    args.interval = quick[0] if args.interval is None else args.interval
    args.trials = quick[1] if args.trials is None else args.trials
    args.baseline_trials = quick[2] if args.baseline_trials is None else args.baseline_trials
    print(
        f"latency bench: interval {args.interval:g} s, keyframe {' '.join(f'{k:g}' for k in args.keyframe)} s, "
        f"backends {' '.join(args.backends)}, trials {args.trials}"
        + ("" if args.no_baseline else f", baseline {args.baseline} with {args.baseline_trials} trials")
        + f"; code from {sys.path[0]}",
        flush=True,
    )
    started = time.perf_counter()
    results = asyncio.run(run_all(args))
    if args.json_out:
        args.json_out.write_text(json.dumps({"results": results}))
    print_run(results, f"{args.tag} code")
    if not args.no_baseline:
        log(f"[old] running {args.baseline} in a subprocess ...")
        print_side_by_side(results, run_baseline(args), args.baseline)
    print(f"\ntook {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
