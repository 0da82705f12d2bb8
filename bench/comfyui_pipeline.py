"""How busy do we keep ComfyUI? The seed's sequential flow against ours, side by side.

Against the ComfyUI test server (each in its own process, a fixed execution time per frame from
``--step-delay`` × ``--steps``), this measures for each flow:

* **busy**: the fraction of wall time the server(s) spent executing prompts, from the
  ``execution_start`` / ``execution_success`` timestamps in ``/history`` (the protocol's own
  record, so the same script works against a real ComfyUI) over the window from the first
  prompt's start to the last prompt's end;
* **frames/s**: frames delivered to the display (published by the controller, or finished by the
  seed loop) per second of that window, and keyframes/s for hybrid.

The seed flow is its BACKEND_ARCHITECTURE loop: upload → queue → wait → /history → download →
copy → embed → cache, then the next frame. Ours is the real DreamController + ComfyUIBackend.
"interpolate" is interpolate mode with ``interpolation.walk: off`` (txt2img keyframes, in-betweens
slerped and decoded on the server); "interpolate-walk" is the latent walk (every frame sampled,
a segment's frames spread over the servers at once, the next segment queued behind it).

    .venv/bin/python bench/comfyui_pipeline.py            # about a minute
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from dream_window.app import build_controller
from dream_window.backends.comfyui import create_comfyui_backend
from dream_window.backends.comfyui.client import ComfyUIClient
from dream_window.backends.comfyui.graphs import SD15WorkflowBuilder
from dream_window.config import ComfyUIConfig, load_config
from dream_window.events import FramePublished
from dream_window.file_ops import atomic_write_bytes
from dream_window.values.generation import GenerationRequest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Servers:
    """N test servers, each its own process (so our client's work never slows theirs)."""

    def __init__(self, n: int, step_delay: float, root: Path) -> None:
        self.urls: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        for i in range(n):
            port = free_port()
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "comfyui_fake",
                        "--port",
                        str(port),
                        "--step-delay",
                        str(step_delay),
                        "--root",
                        str(root / f"server{i}"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            self.urls.append(f"http://127.0.0.1:{port}")

    async def wait_up(self) -> None:
        for url in self.urls:
            for _ in range(200):
                c = ComfyUIClient(url, max_retries=0)
                try:
                    await c.open()
                    await c.close()
                    break
                except Exception:
                    await c.close()
                    await asyncio.sleep(0.05)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(10)


async def busy_fraction(urls: list[str], since_ms: float) -> tuple[float, float, int]:
    """(busy fraction, window seconds, prompts) from /history execution timestamps."""
    spans: list[list[tuple[float, float]]] = []
    for url in urls:
        c = ComfyUIClient(url, max_retries=0)
        await c.open()
        hist = await c._request("GET", "/history")
        await c.close()
        s = []
        for entry in hist.values():
            msgs = dict((m[0], m[1]) for m in entry["status"]["messages"])
            start = msgs.get("execution_start", {}).get("timestamp")
            end = next(
                (
                    msgs[k]["timestamp"]
                    for k in ("execution_success", "execution_error", "execution_interrupted")
                    if k in msgs
                ),
                None,
            )
            if start is not None and end is not None and start >= since_ms:
                s.append((start / 1000.0, end / 1000.0))
        spans.append(s)
    every = [x for s in spans for x in s]
    if not every:
        return 0.0, 0.0, 0
    t0 = min(a for a, _ in every)
    t1 = max(b for _, b in every)
    window = max(t1 - t0, 1e-9)
    busy = sum(sum(b - a for a, b in s) for s in spans) / len(urls)
    return busy / window, window, len(every)


# --- the seed's flow ------------------------------------------------------------------------------


async def seed_flow(url: str, frames: int, out: Path, size: tuple[int, int], steps: int) -> int:
    builder = SD15WorkflowBuilder(ComfyUIConfig(sd15_checkpoint="tiny_sd15.safetensors"))
    client = ComfyUIClient(url)
    await client.open()
    db = sqlite3.connect(out / "cache.db")
    db.execute("CREATE TABLE IF NOT EXISTS frames (id INTEGER PRIMARY KEY, path TEXT, emb BLOB)")
    image = Image.new("RGB", size, (90, 60, 120))
    try:
        for i in range(frames):
            buf = io.BytesIO()
            image.save(buf, "PNG")
            ref = await client.upload_image(
                buf.getvalue(), f"seed_{i}.png", overwrite=True
            )  # seed: every frame
            req = GenerationRequest(
                prompt="misty forest", seed=i, width=size[0], height=size[1], steps=steps, denoise=0.4
            )
            built = builder.build_img2img(req, ref.annotated(), prefix="seed/frame")
            pid = await client.queue_prompt(built.graph)
            await client.wait_for_completion(pid, timeout=60)
            outputs = await client.get_output_images(pid)  # seed: /history after completion
            data = await client.download(outputs[built.image_node][0])
            image = Image.open(io.BytesIO(data)).convert("RGB")
            path = out / f"frame_{i:05d}.png"  # copy
            b = io.BytesIO()
            image.save(b, "PNG")
            atomic_write_bytes(path, b.getvalue())
            small = np.asarray(image.resize((32, 32)), dtype=np.float32)  # embed
            emb = np.concatenate(
                [
                    small.mean(axis=(0, 1)),
                    small.std(axis=(0, 1)),
                    np.histogram(small, bins=32)[0].astype(np.float32),
                ]
            )
            db.execute("INSERT INTO frames (path, emb) VALUES (?, ?)", (str(path), emb.tobytes()))  # cache
            db.commit()
    finally:
        db.close()
        await client.close()
    return frames


# --- ours -------------------------------------------------------------------------------------------


async def our_flow(
    urls: list[str],
    mode: str,
    frames: int,
    out: Path,
    size: tuple[int, int],
    steps: int,
    speculate: bool = True,
) -> tuple[int, int]:
    walk = "auto" if mode == "interpolate-walk" else "off"
    mode = mode.removesuffix("-walk")
    data: dict[str, Any] = {
        "system": {"backend": "comfyui", "comfyui_url": urls, "output_dir": str(out)},
        "generation": {
            "mode": mode,
            "model": "sd15",
            "width": size[0],
            "height": size[1],
            "steps": steps,
            "denoise": 0.4,
            "frame_interval": 0,
            "keyframe_interval": 4,
            "interpolation_frames": 3,
            "buffer_size": 8,
            "cache": {"enabled": False},
        },
        "comfyui": {"sd15_checkpoint": "tiny_sd15.safetensors", "speculate": speculate},
        "interpolation": {"walk": walk},
        "viewer": {"enabled": False},
        "game_detection": {"enabled": False},
    }
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    backend = create_comfyui_backend(config)
    await backend.start()
    controller = build_controller(config, backend, max_frames=frames, fsync=True)
    keys = 0

    def count(frame: FramePublished) -> None:
        nonlocal keys
        if frame.kind != "inbetween":
            keys += 1

    controller.events.subscribe(FramePublished, count)
    try:
        await controller.run()
    finally:
        await backend.close()
    return controller.frame_count, keys


async def measure(label: str, urls: list[str], coro: Any) -> dict[str, Any]:
    since = time.time() * 1000.0
    t0 = time.perf_counter()
    result = await coro
    wall = time.perf_counter() - t0
    busy, window, prompts = await busy_fraction(urls, since)
    frames = result[0] if isinstance(result, tuple) else result
    return {
        "label": label,
        "busy": busy,
        "window": window,
        "wall": wall,
        "frames": frames,
        "fps": frames / max(window, 1e-9),
        "prompts": prompts,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--step-delay", type=float, default=0.05, help="seconds per sampler step on the server")
    ap.add_argument("--size", default="256x512", help="frame size WxH")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # servers starting up are 'unreachable' for a moment
    w, h = (int(x) for x in args.size.split("x"))
    size = (w, h)
    root = Path(tempfile.mkdtemp(prefix="dw-bench-"))
    rows: list[dict[str, Any]] = []
    for n in (1, 2, 4):
        servers = Servers(n, args.step_delay, root / f"n{n}")
        try:
            await servers.wait_up()
            if n == 1:
                out = root / "seed"
                out.mkdir()
                r = await measure(
                    "seed sequential img2img",
                    servers.urls,
                    seed_flow(servers.urls[0], args.frames, out, size, args.steps),
                )
                rows.append({**r, "servers": n})
            modes = ["hybrid", "interpolate", "interpolate-walk"]
            for mode in ["img2img", *modes] if n == 1 else modes:
                out = root / f"{mode}-{n}"
                out.mkdir()
                frames = args.frames if mode == "img2img" else args.frames * 3
                r = await measure(
                    f"ours {mode}", servers.urls, our_flow(servers.urls, mode, frames, out, size, args.steps)
                )
                rows.append({**r, "servers": n})
        finally:
            servers.stop()

    print(
        f"\nComfyUI pipeline: {size[0]}x{size[1]}, {args.steps} steps x {args.step_delay:g}s per frame "
        f"(~{args.steps * args.step_delay:.2f}s execution), test server per process, {os.cpu_count()} CPUs\n"
    )
    print(
        f"{'flow':28} {'servers':>7} {'busy':>7} {'frames':>7} {'prompts':>8} {'window s':>9} {'frames/s':>9}"
    )
    for r in rows:
        print(
            f"{r['label']:28} {r['servers']:>7} {r['busy']:>6.1%} {r['frames']:>7} {r['prompts']:>8} "
            f"{r['window']:>9.2f} {r['fps']:>9.2f}"
        )
    seed = rows[0]
    print("\nratios (ours / seed):")
    for r in rows[1:]:
        if r["servers"] == 1:
            print(
                f"  {r['label']:26} busy {r['busy'] / max(seed['busy'], 1e-9):.2f}x, "
                f"frames/s {r['fps'] / max(seed['fps'], 1e-9):.2f}x"
            )
    print("\nscaling with servers (frames/s relative to 1 server):")
    for mode in ("hybrid", "interpolate", "interpolate-walk"):
        one = next(r for r in rows if r["label"] == f"ours {mode}" and r["servers"] == 1)
        for r in rows:
            if r["label"] == f"ours {mode}" and r["servers"] > 1:
                print(f"  {mode:16} {r['servers']} servers: {r['fps'] / max(one['fps'], 1e-9):.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
