"""``python -m comfyui_fake --port 8189 --step-delay 0.05``: a fake ComfyUI server until Ctrl-C.

``--model-load-delay 3`` makes the first prompt after a start (or after ``/free``) take 3 s longer
per model file it loads, as a real checkpoint load does. ``--decode-delay 0.07`` makes each image
a VAEDecode makes take 0.07 s, as a real VAE decode takes GPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

from comfyui_fake.server import ComfyTestServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_fake",
        description="A ComfyUI-protocol test server backed by Dream Window's built-in engine.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8189)
    parser.add_argument("--root", type=Path, help="Folder for input/, output/, temp/ (default: a temp dir).")
    parser.add_argument("--step-delay", type=float, default=0.05, help="Seconds per sampler step.")
    parser.add_argument(
        "--model-load-delay",
        type=float,
        default=0.0,
        help="Seconds a model file's first load takes after start or /free (default 0).",
    )
    parser.add_argument(
        "--decode-delay",
        type=float,
        default=0.0,
        help="Seconds VAEDecode takes per image it decodes (default 0).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def serve() -> None:
        server = ComfyTestServer(
            host=args.host,
            port=args.port,
            root=args.root,
            step_delay=args.step_delay,
            model_load_delay=args.model_load_delay,
            decode_delay=args.decode_delay,
        )
        await server.start()
        print(f"ComfyUI test server on {server.url} (files in {server.root})", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
