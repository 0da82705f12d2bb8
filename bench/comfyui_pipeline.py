"""How busy do we keep ComfyUI, and how do the modes scale over servers? Side by side with the
code before the change.

Against the ComfyUI test server (each in its own process, a fixed execution time per frame from
``--step-delay`` × ``--steps``, and per decoded image from ``--decode-delay``), this measures for
each flow:

* **busy**: the fraction of wall time the server(s) spent executing prompts, from the
  ``execution_start`` / ``execution_success`` timestamps in ``/history`` (the protocol's own
  record, so the same script works against a real ComfyUI) over the window from the first
  prompt's start to the last prompt's end;
* **frames/s**: frames delivered to the display (published by the controller, or finished by the
  seed loop) per second of that window, and keyframes/s for hybrid;
* **frames**: a digest of the pixels of every frame published, in order (seeds are fixed:
  ``seed_policy: increment``): the same digest at 1, 2 and 4 servers means the same frames on
  screen.

The seed flow is its BACKEND_ARCHITECTURE loop: upload → queue → wait → /history → download →
copy → embed → cache, then the next frame. Ours is the real DreamController + ComfyUIBackend.
"interpolate" is interpolate mode with ``interpolation.walk: off`` (txt2img keyframes, in-betweens
slerped and decoded on the server); "interpolate-walk" is the latent walk (every frame sampled,
a segment's frames spread over the servers at once, the next segment queued behind it).

The code before the change (``--baseline REF``, its ``src/`` taken with ``git archive``) runs the
same flows in a subprocess against the working tree's test server; both are printed side by side.

    .venv/bin/python bench/comfyui_pipeline.py                     # a few minutes, old and new
    .venv/bin/python bench/comfyui_pipeline.py --modes hybrid --decode-delay 0.07 --size 128x256
    .venv/bin/python bench/comfyui_pipeline.py --no-baseline       # the working tree only
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _common import REPO, free_port, log, rerun_on, temp_home, use_source
from PIL import Image

SRC = use_source()
HOME = temp_home("dw-bench-")

from dream_window.app import build_controller  # noqa: E402
from dream_window.backends.comfyui import create_comfyui_backend  # noqa: E402
from dream_window.backends.comfyui.client import ComfyUIClient  # noqa: E402
from dream_window.backends.comfyui.graphs import SD15WorkflowBuilder  # noqa: E402
from dream_window.config import ComfyUIConfig, load_config  # noqa: E402
from dream_window.events import FramePublished  # noqa: E402
from dream_window.file_ops import atomic_write_bytes  # noqa: E402
from dream_window.values.generation import GenerationRequest  # noqa: E402

MODES = ("hybrid", "interpolate", "interpolate-walk")


class Servers:
    """N test servers, each its own process (so our client's work never slows theirs)."""

    def __init__(self, n: int, step_delay: float, decode_delay: float, root: Path) -> None:
        self.urls: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        # The working tree's test server for old and new code alike (the old one may lack options).
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
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
                        "--decode-delay",
                        str(decode_delay),
                        "--root",
                        str(root / f"server{i}"),
                    ],
                    env=env,
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


def _kind(entry: dict[str, Any]) -> str:
    """ "sample" (a frame sampled: keyframe, img2img, walk frame), "decode" (LoadLatent → VAEDecode)
    or "other" (an encode)."""
    classes = {node["class_type"] for node in entry["prompt"][2].values()}
    if classes & {"KSampler", "SamplerCustom", "SamplerCustomAdvanced"}:
        return "sample"
    return "decode" if "VAEDecode" in classes else "other"


async def busy_fraction(urls: list[str], since_ms: float) -> tuple[float, float, int, dict[str, float]]:
    """(busy fraction, window seconds, prompts, execution seconds per prompt kind that finished)
    from /history execution timestamps."""
    spans: list[list[tuple[float, float]]] = []
    by_kind: dict[str, float] = {}
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
                if "execution_success" in msgs:
                    kind = _kind(entry)
                    by_kind[kind] = by_kind.get(kind, 0.0) + (end - start) / 1000.0
                    by_kind[f"{kind} n"] = by_kind.get(f"{kind} n", 0) + 1
        spans.append(s)
    every = [x for s in spans for x in s]
    if not every:
        return 0.0, 0.0, 0, by_kind
    t0 = min(a for a, _ in every)
    t1 = max(b for _, b in every)
    window = max(t1 - t0, 1e-9)
    busy = sum(sum(b - a for a, b in s) for s in spans) / len(urls)
    return busy / window, window, len(every), by_kind


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
    coherence: bool = True,
) -> tuple[int, int, str]:
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
            "colour_coherence": coherence,
            "seed_policy": "increment",
            "seed": 1000,
            "frame_interval": 0,
            "keyframe_interval": 4,
            "interpolation_frames": 3,
            "buffer_size": 8,
            "cache": {"enabled": False},
        },
        "comfyui": {"sd15_checkpoint": "tiny_sd15.safetensors", "speculate": speculate},
        "interpolation": {"walk": walk},
        # One prompt, so every run shows the same frames whatever its speed (a rotation by frame
        # count draws the next prompt at random).
        "prompts": {"list": ["misty forest at dawn, golden light"], "rotate_every_frames": 0},
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
    shown = hashlib.sha256()

    def count(frame: FramePublished) -> None:
        nonlocal keys
        if frame.kind != "inbetween":
            keys += 1
        data = frame.png if frame.png is not None else frame.path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:  # the pixels, not the PNG's text labels
            shown.update(img.convert("RGB").tobytes())

    controller.events.subscribe(FramePublished, count)
    try:
        await controller.run()
    finally:
        await backend.close()
    return controller.frame_count, keys, shown.hexdigest()[:12]


async def measure(label: str, urls: list[str], coro: Any) -> dict[str, Any]:
    since = time.time() * 1000.0
    t0 = time.perf_counter()
    result = await coro
    wall = time.perf_counter() - t0
    busy, window, prompts, by_kind = await busy_fraction(urls, since)
    frames = result[0] if isinstance(result, tuple) else result
    digest = result[2] if isinstance(result, tuple) else ""
    keys = result[1] if isinstance(result, tuple) else frames
    return {
        # Mean execution of one sampled frame, and the decode execution per keyframe shown (hybrid:
        # a segment's in-betweens): the goal's "decode work about as long as its keyframe".
        "sample_s": by_kind.get("sample", 0.0) / max(by_kind.get("sample n", 0), 1),
        "decode_s": by_kind.get("decode", 0.0) / max(keys, 1),
        "digest": digest,
        "label": label,
        "busy": busy,
        "window": window,
        "wall": wall,
        "frames": frames,
        "fps": frames / max(window, 1e-9),
        "prompts": prompts,
    }


async def run_flows(args: argparse.Namespace) -> list[dict[str, Any]]:
    w, h = (int(x) for x in args.size.split("x"))
    size = (w, h)
    root = HOME / f"runs-{args.tag}"
    rows: list[dict[str, Any]] = []
    modes = [m for m in MODES if m in args.modes]
    for n in args.servers:
        servers = Servers(n, args.step_delay, args.decode_delay, root / f"n{n}")
        try:
            await servers.wait_up()
            if n == 1 and "seed" in args.modes:
                out = root / "seed"
                out.mkdir(parents=True)
                r = await measure(
                    "seed sequential img2img",
                    servers.urls,
                    seed_flow(servers.urls[0], args.frames, out, size, args.steps),
                )
                rows.append({**r, "servers": n})
            for mode in ["img2img", *modes] if n == 1 and "img2img" in args.modes else modes:
                out = root / f"{mode}-{n}"
                out.mkdir(parents=True)
                frames = args.frames if mode == "img2img" else args.frames * 3
                r = await measure(
                    f"ours {mode}",
                    servers.urls,
                    our_flow(
                        servers.urls, mode, frames, out, size, args.steps, coherence=args.coherence == "on"
                    ),
                )
                rows.append({**r, "servers": n})
                log(f"[{args.tag}] {mode} at {n} server(s): {r['fps']:.2f} frames/s")
        finally:
            servers.stop()
    return rows


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(
        f"{'flow':28} {'servers':>7} {'busy':>7} {'frames':>7} {'prompts':>8} {'window s':>9} "
        f"{'frames/s':>9} {'sample s':>9} {'decode s/key':>12}  shown"
    )
    for r in rows:
        print(
            f"{r['label']:28} {r['servers']:>7} {r['busy']:>6.1%} {r['frames']:>7} {r['prompts']:>8} "
            f"{r['window']:>9.2f} {r['fps']:>9.2f} {r.get('sample_s', 0):>9.3f} {r.get('decode_s', 0):>12.3f}"
            f"  {r.get('digest', '')}"
        )
    seed = next((r for r in rows if r["label"].startswith("seed")), None)
    if seed is not None:
        print("ratios (ours / seed):")
        for r in rows:
            if r["servers"] == 1 and r is not seed:
                print(
                    f"  {r['label']:26} busy {r['busy'] / max(seed['busy'], 1e-9):.2f}x, "
                    f"frames/s {r['fps'] / max(seed['fps'], 1e-9):.2f}x"
                )


def scaling(rows: list[dict[str, Any]]) -> dict[tuple[str, int], tuple[float, bool]]:
    """(mode, servers) -> (frames/s relative to 1 server, the same frames shown as at 1 server)."""
    out: dict[tuple[str, int], tuple[float, bool]] = {}
    for mode in MODES:
        one = next((r for r in rows if r["label"] == f"ours {mode}" and r["servers"] == 1), None)
        if one is None:
            continue
        for r in rows:
            if r["label"] == f"ours {mode}" and r["servers"] > 1:
                out[(mode, r["servers"])] = (r["fps"] / max(one["fps"], 1e-9), r["digest"] == one["digest"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--step-delay", type=float, default=0.05, help="seconds per sampler step on the server")
    ap.add_argument(
        "--decode-delay",
        type=float,
        default=0.0,
        help="seconds per image a VAEDecode takes on the server (0.07 with the defaults: a segment's "
        "3 in-betweens take about as long as its keyframe)",
    )
    ap.add_argument("--size", default="256x512", help="frame size WxH")
    ap.add_argument(
        "--coherence", choices=["on", "off"], default="on", help="generation.colour_coherence (default on)"
    )
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["seed", "img2img", *MODES],
        choices=["seed", "img2img", *MODES],
        help="flows to run (seed and img2img run on one server only)",
    )
    ap.add_argument("--servers", nargs="+", type=int, default=[1, 2, 4], help="server counts to run")
    ap.add_argument("--baseline", default="f706f6a", help="git ref of the code before the change")
    ap.add_argument("--no-baseline", action="store_true", help="measure the working tree only")
    ap.add_argument("--json-out", type=Path, help="also write the results here as JSON")
    ap.add_argument("--tag", default="new", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # servers starting up are 'unreachable' for a moment
    rows = asyncio.run(run_flows(args))
    if args.json_out:
        args.json_out.write_text(json.dumps({"results": rows}))
    if args.tag != "new":
        return
    old: list[dict[str, Any]] = []
    if not args.no_baseline:
        log(f"[old] running {args.baseline} in a subprocess ...")
        flags = [
            "--frames",
            str(args.frames),
            "--steps",
            str(args.steps),
            "--step-delay",
            str(args.step_delay),
        ]
        flags += ["--decode-delay", str(args.decode_delay), "--size", args.size, "--modes", *args.modes]
        flags += ["--coherence", args.coherence]
        flags += ["--servers", *(str(n) for n in args.servers)]
        old = list(rerun_on(args.baseline, __file__, HOME, flags)["results"])

    w, h = args.size.split("x")
    print(
        f"\nComfyUI pipeline: {w}x{h}, {args.steps} steps x {args.step_delay:g}s per frame "
        f"(~{args.steps * args.step_delay:.2f}s execution), VAE decode {args.decode_delay:g}s per image, "
        f"test server per process, {os.cpu_count()} CPUs; code from {SRC}"
    )
    print_rows("new (working tree)", rows)
    if old:
        print_rows(f"old ({args.baseline})", old)
    new_s, old_s = scaling(rows), scaling(old)
    print("\nscaling with servers (frames/s relative to 1 server; 'same': the frames shown equal 1 server's)")
    print(f"  {'mode':18} {'servers':>7} {'old':>12} {'new':>12}")
    for key, (ratio, same) in new_s.items():
        was = old_s.get(key)
        was_text = f"{was[0]:.2f}x {'same' if was[1] else 'DIFF'}" if was else "-"
        print(f"  {key[0]:18} {key[1]:>7} {was_text:>12} {ratio:>6.2f}x {'same' if same else 'DIFF'}")
    if old:
        print("\nnew / old frames/s, same flow and servers:")
        for r in rows:
            o = next((x for x in old if x["label"] == r["label"] and x["servers"] == r["servers"]), None)
            if o is not None:
                print(f"  {r['label']:28} {r['servers']} server(s): {r['fps'] / max(o['fps'], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
