"""What does a long dream look like, in numbers? Each mode, on the built-in engine and on the
ComfyUI test server, new code against old, side by side; contact sheets and plots to look at.

For every backend (``builtin``; ``comfyui``: the ComfyUI test server in its own process, the
working tree's for old and new alike, so both talk to the same "model") and every mode (img2img,
interpolate, hybrid) a real dream (``build_controller``, the default config at 256x512 with
``frame_interval: 0``, seeds incrementing from 0, prompts rotating every 40 frames, no frame cache,
no viewer) publishes ``--frames`` frames. Each published PNG is measured with
``values/quality.py`` (loaded by file path from the working tree, so the old code is
measured by the same ruler), on the same downscaled copy status.json uses:

    change p50/p95     mean |diff| between consecutive frames (goals: p95 <= 0.05 img2img, <= 0.03 others)
    sharp min/ref      the lowest sharpness over the sharpness of its prompt's first frame (goal >= 0.5)
    pop p99            a keyframe's sharpness over the mean of its two neighbours' (goal <= 1.3)
    sat / bright       the largest |drift| of saturation and brightness from the prompt's first frame
    clip p95           near-black + near-white fraction
    ms/frame           wall time per published frame, less the measuring

The reference of "first frame" is the first generated frame (txt2img/img2img/keyframe) published
for each prompt: the one colour coherence holds frames to. Per mode and backend it saves
``{tag}-{backend}-{mode}-sheet.png`` (every 50th frame) and ``...-plot.png`` (the metrics over
time, drawn with Pillow) into ``--out``. Then the drifting-backend check: 1,000 frames of img2img
at 64x64 on a backend that comes back 3 % more saturated and 2 % darker every pass
(tests/dream/drifting.py), with and without colour coherence, against the +-15 % band.

    .venv/bin/python bench/quality.py                     # 1,000 frames per mode: about half an hour
    .venv/bin/python bench/quality.py --frames 200        # a few minutes
    .venv/bin/python bench/quality.py --no-baseline --backends builtin --modes hybrid

It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import yaml
from _common import REPO, TestServerProcess, log, pct, rerun_on, temp_home, use_source
from PIL import Image, ImageDraw

SRC = use_source()
HOME = temp_home("dw-quality-")

from dream_window.app import build_controller  # noqa: E402
from dream_window.config import load_config  # noqa: E402
from dream_window.events import FramePublished  # noqa: E402


def _ruler() -> ModuleType:
    """The working tree's metric module, whatever code is measured (it imports numpy only)."""
    path = REPO / "src" / "dream_window" / "values" / "quality.py"
    spec = importlib.util.spec_from_file_location("dw_quality_metrics", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


qm = _ruler()
MODES = ("img2img", "interpolate", "hybrid")
SHEET_EVERY = 50
STALL_S = 120.0  # no frame published for this long: the run failed
GENERATED = {"txt2img", "img2img", "keyframe", "injected"}
BASELINE = "23c3182"  # HEAD when issue 15's work began


# --- one run -------------------------------------------------------------------------------------


@dataclass
class Run:
    """What one dream published, measured as it went."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    thumbs: list[tuple[int, str, Image.Image]] = field(default_factory=list)
    measuring_s: float = 0.0
    _prev: np.ndarray | None = None
    _ref: tuple[str, Any] | None = None  # (prompt, metrics of its first generated frame)

    def on_frame(self, ev: FramePublished) -> None:
        t0 = time.perf_counter()
        with Image.open(io.BytesIO(ev.png) if ev.png is not None else ev.path) as img:
            rgb = np.asarray(img.convert("RGB"))
        small = qm.downscale(rgb)
        m = qm.measure(small)
        if ev.kind in GENERATED and (self._ref is None or self._ref[0] != ev.prompt):
            self._ref = (ev.prompt, m)
        ref = self._ref[1] if self._ref is not None and self._ref[0] == ev.prompt else None
        self.rows.append(
            {
                "index": ev.index,
                "kind": ev.kind,
                **m.to_dict(),
                "change": qm.change(self._prev, small) if self._prev is not None else None,
                "sharp_ratio": m.sharpness / ref.sharpness if ref is not None and ref.sharpness > 0 else None,
                "sat_drift": qm.relative(m.saturation, ref.saturation, 0.02) if ref is not None else None,
                "bright_drift": qm.relative(m.brightness, ref.brightness, 0.02) if ref is not None else None,
            }
        )
        self._prev = small
        if (len(self.rows) - 1) % SHEET_EVERY == 0:
            thumb = Image.fromarray(rgb)
            thumb.thumbnail((rgb.shape[1] // 2, rgb.shape[0] // 2))
            self.thumbs.append((ev.index, ev.kind, thumb))
        self.measuring_s += time.perf_counter() - t0


def summary(run: Run, wall_s: float) -> dict[str, Any]:
    rows = run.rows

    def col(key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]

    change, ratio, clipped = col("change"), col("sharp_ratio"), col("clipped")
    pops = qm.pop_ratios([r["sharpness"] for r in rows], [r["kind"] == "keyframe" for r in rows])
    return {
        "frames": len(rows),
        "change_p50": pct(change, 0.5) if change else None,
        "change_p95": pct(change, 0.95) if change else None,
        "sharp_min_ratio": min(ratio) if ratio else None,
        "pop_p99": pct(pops, 0.99) if pops else None,
        "sat_drift": max(map(abs, col("sat_drift")), default=None),
        "bright_drift": max(map(abs, col("bright_drift")), default=None),
        "clipped_p95": pct(clipped, 0.95) if clipped else None,
        "ms_per_frame": (wall_s - run.measuring_s) * 1000.0 / max(len(rows), 1),
    }


def dream_config(root: Path, backend: str, mode: str, size: tuple[int, int], url: str | None) -> Any:
    data: dict[str, Any] = {
        "system": {"backend": backend, "output_dir": str(root / "output"), "cache_dir": str(root / "cache")},
        "generation": {
            "mode": mode,
            "model": "sd15",
            "width": size[0],
            "height": size[1],
            "frame_interval": 0,
            "seed_policy": "increment",
            "seed": 0,
            "history_size": 20,
            "cache": {"enabled": False},
        },
        "prompts": {"rotate_every_frames": 40},
        "viewer": {"enabled": False},
        "game_detection": {"enabled": False},
    }
    if url is not None:
        data["system"]["comfyui_url"] = url
        data["comfyui"] = {"sd15_checkpoint": "tiny_sd15.safetensors"}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


async def run_one(
    backend_name: str, mode: str, args: argparse.Namespace, url: str | None
) -> tuple[Run, float]:
    config = dream_config(HOME / "runs" / f"{backend_name}-{mode}", backend_name, mode, args.size, url)
    if backend_name == "comfyui":
        from dream_window.backends.comfyui import create_comfyui_backend

        backend = create_comfyui_backend(config)
    else:
        from dream_window.backends.builtin import BuiltinEngine

        backend = BuiltinEngine()
    await backend.start()
    controller = build_controller(config, backend, rng=random.Random(0), max_frames=args.frames, fsync=False)
    run = Run()
    controller.events.subscribe(FramePublished, run.on_frame)
    t0 = time.perf_counter()
    dream = asyncio.create_task(controller.run())
    try:
        # A backend that keeps failing is retried forever by the dream: say so instead of hanging.
        seen = -1
        while not dream.done():
            await asyncio.wait([dream], timeout=STALL_S)
            if not dream.done() and len(run.rows) == seen:
                controller.stop()
                await dream
                raise RuntimeError(
                    f"{backend_name} {mode}: no frame in {STALL_S:g} s: {controller.snapshot()}"
                )
            seen = len(run.rows)
        await dream
    finally:
        await backend.close()
    return run, time.perf_counter() - t0


async def run_all(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for backend in args.backends:
        server = None
        if backend == "comfyui":
            server = TestServerProcess(HOME / "comfy")
            await server.wait_up()
        try:
            for mode in args.modes:
                log(f"[{args.tag}] {backend} {mode}: {args.frames} frames ...")
                run, wall = await run_one(backend, mode, args, server.url if server else None)
                key = f"{backend}/{mode}"
                results[key] = summary(run, wall)
                save_pictures(run, args.out / f"{args.tag}-{backend}-{mode}", f"{args.tag} {key}")
        finally:
            if server is not None:
                server.stop()
    return results


# --- pictures ----------------------------------------------------------------------------------


def save_pictures(run: Run, stem: Path, title: str) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(run.thumbs, title).save(stem.with_name(stem.name + "-sheet.png"))
    plot(run.rows, title).save(stem.with_name(stem.name + "-plot.png"))


def contact_sheet(thumbs: list[tuple[int, str, Image.Image]], title: str, columns: int = 10) -> Image.Image:
    """Every 50th frame in a grid, each labelled with its number and kind."""
    w, h = thumbs[0][2].size
    rows = (len(thumbs) + columns - 1) // columns
    cols = min(columns, len(thumbs))
    sheet = Image.new("RGB", (cols * (w + 4) + 4, rows * (h + 18) + 24), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 6), f"{title}: every {SHEET_EVERY}th frame", fill=(230, 230, 230))
    for i, (index, kind, img) in enumerate(thumbs):
        x, y = 4 + (i % columns) * (w + 4), 24 + (i // columns) * (h + 18)
        sheet.paste(img, (x, y))
        draw.text((x + 2, y + h + 2), f"#{index} {kind}", fill=(200, 200, 200))
    return sheet


PLOTTED = (
    ("change", (230, 90, 90)),
    ("sharpness", (90, 200, 120)),
    ("saturation", (200, 120, 230)),
    ("brightness", (240, 210, 90)),
    ("clipped", (120, 170, 240)),
)


def plot(rows: list[dict[str, Any]], title: str, width: int = 1000, panel: int = 90) -> Image.Image:
    """One panel per metric over the frame number, each scaled to its own range (printed);
    keyframes marked with ticks under the first panel."""
    n = len(rows)
    img = Image.new("RGB", (width + 80, 30 + len(PLOTTED) * (panel + 14)), (20, 20, 24))
    draw = ImageDraw.Draw(img)
    draw.text((6, 6), f"{title}: {n} frames", fill=(230, 230, 230))
    for p, (key, colour) in enumerate(PLOTTED):
        top = 30 + p * (panel + 14)
        vals = [r[key] for r in rows]
        known = [v for v in vals if v is not None]
        lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
        span = hi - lo or 1.0
        draw.rectangle((70, top, 70 + width, top + panel), outline=(70, 70, 80))
        draw.text((4, top), key, fill=colour)
        draw.text((4, top + 14), f"{hi:.3f}", fill=(160, 160, 160))
        draw.text((4, top + panel - 12), f"{lo:.3f}", fill=(160, 160, 160))
        points = [
            (70 + i * width / max(n - 1, 1), top + panel - (v - lo) / span * panel)
            for i, v in enumerate(vals)
            if v is not None
        ]
        if len(points) > 1:
            draw.line(points, fill=colour, width=1)
        if p == 0:
            for i, r in enumerate(rows):
                if r["kind"] == "keyframe":
                    x = 70 + i * width / max(n - 1, 1)
                    draw.line((x, top + panel, x, top + panel + 4), fill=(150, 150, 150))
    return img


# --- the drifting backend ----------------------------------------------------------------------------


async def drift_check(frames: int) -> dict[str, tuple[float, float]]:
    """Worst |saturation| and |brightness| drift from the first frame over ``frames`` img2img frames
    (64x64, denoise 0.15) on the drifting backend, with and without colour coherence."""
    sys.path.insert(0, str(REPO))
    from tests.dream.drifting import DriftingBackend

    from dream_window.backends.builtin import BuiltinEngine
    from dream_window.config import GenerationConfig, SeedPolicy
    from dream_window.dream.coherence import ColourCoherence
    from dream_window.dream.modes.base import ModeContext
    from dream_window.dream.modes.img2img import Img2ImgMode
    from dream_window.values.seeds import SeedSource

    out: dict[str, tuple[float, float]] = {}
    for label, coherence in (("without", None), ("with", ColourCoherence())):
        engine = BuiltinEngine()
        await engine.start()
        ctx = ModeContext(
            backend=DriftingBackend(engine),  # type: ignore[arg-type]
            config=GenerationConfig(mode="img2img", model="sd15", width=64, height=64, denoise=0.15),
            prompt=lambda: "sunset over lavender fields, warm orange and purple sky",
            seeds=SeedSource(SeedPolicy.INCREMENT, 1, random.Random(0)),
            coherence=coherence,
        )
        mode = Img2ImgMode(ctx)
        ref = None
        worst = [0.0, 0.0]
        for _ in range(frames):
            (frame,) = await mode.next_frames()
            m = qm.measure(qm.downscale(np.asarray(frame.image)))
            if ref is None:
                ref = m
                continue
            worst[0] = max(worst[0], abs(m.saturation / ref.saturation - 1))
            worst[1] = max(worst[1], abs(m.brightness / ref.brightness - 1))
        await engine.close()
        out[label] = (worst[0], worst[1])
    return out


# --- the table ---------------------------------------------------------------------------------------

COLUMNS = (
    ("change_p50", "chg p50", "{:.4f}"),
    ("change_p95", "chg p95", "{:.4f}"),
    ("sharp_min_ratio", "sharp min/ref", "{:.2f}"),
    ("pop_p99", "pop p99", "{:.2f}"),
    ("sat_drift", "sat drift", "{:.0%}"),
    ("bright_drift", "bright drift", "{:.0%}"),
    ("clipped_p95", "clip p95", "{:.3f}"),
    ("ms_per_frame", "ms/frame", "{:.0f}"),
)


def cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def print_table(new: dict[str, dict[str, Any]], old: dict[str, dict[str, Any]] | None, baseline: str) -> None:
    frames = next(iter(new.values()))["frames"] if new else 0
    print(f"\nquality over {frames} frames per run; each cell: old -> new" if old else "")
    if old:
        print(f"(old = {baseline}, new = the working tree)")
    width = 15 if old else 8
    print(f"{'backend/mode':22}" + "".join(f"{h:>{max(width, len(h)) + 2}}" for _, h, _ in COLUMNS))
    for key, r in new.items():
        o = (old or {}).get(key)
        cells = []
        for k, h, fmt in COLUMNS:
            text = cell(r.get(k), fmt) if o is None else f"{cell(o.get(k), fmt)} -> {cell(r.get(k), fmt)}"
            cells.append(f"{text:>{max(width, len(h)) + 2}}")
        print(f"{key:22}" + "".join(cells))
    print("goals: chg p95 <= 0.05 (img2img) / 0.03 (others); sharp min/ref >= 0.5; pop p99 <= 1.3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000, help="frames per mode and backend (default 1000)")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--backends", nargs="+", choices=["builtin", "comfyui"], default=["builtin", "comfyui"])
    ap.add_argument("--size", default="256x512", help="frame size WxH (default 256x512)")
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench-out" / "quality", help="contact sheets and plots"
    )
    ap.add_argument("--baseline", default=BASELINE, help=f"git ref of the code before (default {BASELINE})")
    ap.add_argument("--no-baseline", action="store_true", help="measure the working tree only")
    ap.add_argument("--drift-frames", type=int, default=1000, help="frames of the drifting-backend check")
    ap.add_argument("--no-drift", action="store_true", help="skip the drifting-backend check")
    ap.add_argument("--json-out", type=Path, help="also write the results here as JSON")
    ap.add_argument("--tag", default="new", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.size = tuple(int(x) for x in args.size.split("x"))
    args.out = args.out.resolve()
    logging.basicConfig(level=logging.ERROR)  # a test server starting up is 'unreachable' for a moment
    print(
        f"quality bench: {args.frames} frames per run, {args.size[0]}x{args.size[1]}, modes {' '.join(args.modes)}, "
        f"backends {' '.join(args.backends)}; code from {SRC}",
        flush=True,
    )
    started = time.perf_counter()
    new = asyncio.run(run_all(args))
    if args.json_out:
        args.json_out.write_text(json.dumps({"results": new}))
    old = None
    if not args.no_baseline:
        log(f"[old] running {args.baseline} in a subprocess ...")
        flags = ["--frames", str(args.frames), "--modes", *args.modes, "--backends", *args.backends]
        flags += ["--size", "x".join(map(str, args.size)), "--out", str(args.out), "--no-drift"]
        old = rerun_on(args.baseline, __file__, HOME, flags)["results"]
    if args.tag == "new":
        print_table(new, old, args.baseline)
        print(f"contact sheets and plots: {args.out}/{{old,new}}-BACKEND-MODE-{{sheet,plot}}.png")
    if not args.no_drift:
        n = args.drift_frames
        log(f"drifting backend: {n} frames with and without colour coherence ...")
        d = asyncio.run(drift_check(n))
        print(f"\ndrifting backend (img2img +3 % saturation, -2 % brightness per pass), {n} frames at 64x64:")
        for label, (s, b) in d.items():
            verdict = "within" if max(s, b) <= 0.15 else "OUTSIDE"
            print(
                f"  {label:7} colour coherence: worst |drift| saturation {s:.1%}, brightness {b:.1%}"
                f" -> {verdict} +-15 %"
            )
    print(f"\ntook {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
