"""Built-in engine speed at 256x512, and how fast `dream-window run` stops on SIGINT.

    .venv/bin/python bench/builtin_engine.py

Prints medians over repeated runs. The goals: under 100 ms a frame for txt2img, img2img and decode
(issue 15; every call uses a fresh seed, so the genome search is counted as in a real dream); stop
on SIGINT/SIGTERM within 2 s.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dream_window.backends.builtin import BuiltinEngine
from dream_window.values.generation import GenerationRequest

PROMPTS = [
    "bioluminescent ocean at night, glowing waves",
    "ancient forest in mist, golden sun rays",
    "crystal cathedral, prismatic light, geometric",
    "ethereal angel made of light, cosmic nebula",
    "a quiet teapot on a table",
]


def median_ms(fn, n: int = 20) -> float:  # type: ignore[no-untyped-def]
    fn(0)  # warm-up
    times = []
    for i in range(1, n + 1):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def stop_latency(runs: int = 3) -> list[float]:
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            cfg = Path(d) / "c.yaml"
            cfg.write_text(
                "system: {backend: builtin}\ngeneration: {frame_interval: 0.05, cache: {enabled: false}}\n"
                "viewer: {enabled: false}\ngame_detection: {enabled: false}\n"
            )
            p = subprocess.Popen(
                [sys.executable, "-m", "dream_window", "run", "--config", str(cfg)],
                cwd=d,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "DREAM_WINDOW_HOME": d},
            )
            status = Path(d) / "output" / "status.json"
            while not (status.exists() and json.loads(status.read_text() or "{}").get("frame_count", 0) >= 3):
                time.sleep(0.02)
            t = time.perf_counter()
            p.send_signal(signal.SIGINT)
            p.wait(timeout=30)
            out.append(time.perf_counter() - t)
    return out


def main() -> None:
    e = BuiltinEngine(offload=False)
    img = __import__("PIL.Image", fromlist=["Image"]).fromarray(e.render(PROMPTS[0], 1, 256, 512))
    rows = []
    for p in PROMPTS:
        rows.append((f"txt2img  {p[:34]:34}", median_ms(lambda i, p=p: e.render(p, 100 + i, 256, 512))))
    rows.append(
        (
            "img2img  denoise 0.4",
            median_ms(lambda i: e.grow(img, GenerationRequest(prompt=PROMPTS[1], seed=200 + i, denoise=0.4))),
        )
    )
    z = e.encode_sync([img])
    rows.append(("encode   1 frame", median_ms(lambda i: e.encode_sync([img]))))
    rows.append(("decode   1 frame", median_ms(lambda i: e.decode_sync(z))))
    print("built-in engine, 256x512, median of 20, a fresh seed per call (goal < 100 ms):")
    for name, ms in rows:
        print(f"  {name:46} {ms:7.1f} ms {'ok' if ms < 100 else 'OVER'}")
    lat = stop_latency()
    print(f"stop latency on SIGINT (s): {', '.join(f'{x:.2f}' for x in lat)} (goal < 2 s)")


if __name__ == "__main__":
    main()
