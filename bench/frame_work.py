"""What the picture work on every frame costs: new code against old, on the same frames, in one run.

Besides encoding and writing it, every published frame is measured (the quality service), and the
frames a mode makes are held to their colours and detail (colour coherence, the detail floor) and
in-betweens matched to their keyframes' look. Each of these works on the frame's pixels in a
worker thread of the dream process; ``bench/footprint.py`` shows their share of its CPU. This
bench times each one alone, median of ``--runs`` calls after a warm-up, on 256x512 frames the
built-in engine draws (the same frames for old and new: its drawing did not change):

    downscale          the small copy every measurement works on (values/quality.py)
    quality per frame  what the quality service does with one published frame: the old code
                       decoded the PNG again, the new takes the picture from the event
    colour stats       ColourStats.of: what coherence measures on every made frame
    colour match       match(): a frame moved toward its reference in LAB (strength 0.5)
    cohere, corrected  ColourCoherence.cohere on a frame that drifted (darker, more saturated)
    detail floor       hold_detail on a softened frame (measure, and sharpen up to the floor)
    look matching      match_look on one soft in-between of two keyframes

The old code (``--baseline``, the commit this session started from) runs in a subprocess on its
own ``src/`` (git archive), side by side. It prints numbers and asserts nothing.

    .venv/bin/python bench/frame_work.py [--runs 30] [--baseline REF] [--no-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, rerun_on, temp_home, use_source

use_source()

import numpy as np  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

from dream_window.backends.builtin import BuiltinEngine  # noqa: E402
from dream_window.dream.coherence import ColourCoherence, ColourStats, match  # noqa: E402
from dream_window.events import FramePublished  # noqa: E402
from dream_window.interpolation.look import match_look  # noqa: E402
from dream_window.quality.tracker import QualityTracker  # noqa: E402
from dream_window.values.generation import GenerationRequest  # noqa: E402
from dream_window.values.quality import downscale  # noqa: E402

BASELINE = "40bf257"  # HEAD when this session's footprint work began
HOME = temp_home("dw-bench-frame-work-")
ROWS = (
    "downscale",
    "quality per frame",
    "colour stats",
    "colour match",
    "cohere, corrected",
    "detail floor",
    "look matching",
)


async def frames(n: int) -> list[Image.Image]:
    engine = BuiltinEngine()
    await engine.start()
    try:
        made = [await engine.txt2img(GenerationRequest(prompt="ember forest", seed=s)) for s in range(n)]
    finally:
        await engine.close()
    return [m.image.convert("RGB") for m in made]


def drifted(img: Image.Image) -> Image.Image:
    """Darker by a fifth and a fifth more saturated: past coherence's band, so it is corrected."""
    hsv = np.asarray(img.convert("HSV"), dtype=np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.2, 0, 255)
    hsv[..., 2] *= 0.8
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


def timed(fn: Callable[[], object], runs: int) -> float:
    """Median milliseconds of one call, after two warm-up calls."""
    fn()
    fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t0))
    return statistics.median(out)


def measure(runs: int) -> dict[str, float]:
    pics = asyncio.run(frames(3))
    key, other, soft_source = pics
    soft = soft_source.filter(ImageFilter.GaussianBlur(2))
    rgb = np.asarray(key)
    buf = io.BytesIO()
    key.save(buf, "PNG")
    png = buf.getvalue()
    carries_picture = "image" in {f.name for f in dataclasses.fields(FramePublished)}

    tracker = QualityTracker(no_clip_reason="bench")
    count = iter(range(10**9))

    def quality() -> None:
        if carries_picture:
            pixels = np.asarray(key.convert("RGB"))
        else:  # the old service decoded the PNG the writer had just encoded
            with Image.open(io.BytesIO(png)) as img:
                pixels = np.asarray(img.convert("RGB"))
        tracker.frame(next(count), "inbetween", "p", pixels)

    now, ref = ColourStats.of(drifted(key)), ColourStats.of(key)
    coherence = ColourCoherence()
    coherence.cohere(key, "k")  # the reference
    drift = drifted(key)
    floor = ColourCoherence()
    floor.cohere(key, "k")
    return {
        "downscale": timed(lambda: downscale(rgb), runs),
        "quality per frame": timed(quality, runs),
        "colour stats": timed(lambda: ColourStats.of(key), runs),
        "colour match": timed(lambda: match(drift, now, ref, 0.5), runs),
        "cohere, corrected": timed(lambda: coherence.cohere(drift, "k"), runs),
        "detail floor": timed(lambda: floor.hold_detail(soft, "k"), runs),
        "look matching": timed(lambda: match_look([soft], [0.5], key, other), runs),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--baseline", default=BASELINE)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--tag", default="new")
    args = p.parse_args()
    log(f"[{args.tag}] {args.runs} runs per row")
    new = measure(args.runs)
    if args.json_out:
        args.json_out.write_text(json.dumps(new))
        return
    old: dict[str, Any] | None = None
    if not args.no_baseline:
        log(f"rerunning on {args.baseline}")
        old = rerun_on(args.baseline, __file__, HOME, ["--runs", str(args.runs)])
    print(f"per-frame picture work, 256x512, median ms of {args.runs} calls (new: the working tree)")
    print(f"  {'':<20} {'old ' + args.baseline if old else '':>12} {'new':>10}   {'new/old' if old else ''}")
    for row in ROWS:
        if old is None:
            print(f"  {row:<20} {new[row]:>10.2f}")
        else:
            print(f"  {row:<20} {old[row]:>12.2f} {new[row]:>10.2f}   {new[row] / old[row]:6.2f}x")


if __name__ == "__main__":
    main()
