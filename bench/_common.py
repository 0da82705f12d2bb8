"""What the benches share: the code they measure, a throwaway home folder, loopback ports,
percentiles, and running the same bench again on an older commit for a side-by-side table.

Not a bench itself (``make bench`` skips files starting with ``_``). Standard library only: it is
imported before the code under measurement is put on ``sys.path``.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Set for a bench rerun on an older commit: the src/ folder to measure instead of the working tree's.
SOURCE_ENV = "DW_BENCH_SRC"


def use_source() -> str:
    """Put the code to measure first on ``sys.path`` (the working tree's, whatever the venv
    installed, or the baseline's in a rerun); returns where it is."""
    src = os.environ.get(SOURCE_ENV, str(REPO / "src"))
    sys.path.insert(0, src)
    return src


def temp_home(prefix: str) -> Path:
    """A temp folder removed at exit, with DREAM_WINDOW_HOME inside it (no bench touches the real
    home folder) and offline model hubs."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["DREAM_WINDOW_HOME"] = str(home / "home")
    os.environ["HF_HUB_OFFLINE"] = "1"
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def rerun_on(ref: str, script: str, home: Path, args: list[str]) -> Any:
    """``script`` again, in a subprocess, measuring ``ref``'s src/ (taken with git archive) with
    ``args``; returns what it wrote with ``--json-out``."""
    tree = home / "baseline"
    tree.mkdir()
    git = ["git", "-C", str(REPO), "archive", "--format=tar", ref, "src"]
    with tarfile.open(fileobj=io.BytesIO(subprocess.run(git, check=True, capture_output=True).stdout)) as tar:
        tar.extractall(tree, filter="data")
    out = home / "baseline.json"
    cmd = [
        sys.executable,
        str(Path(script).resolve()),
        "--no-baseline",
        "--json-out",
        str(out),
        "--tag",
        "old",
    ]
    env = {**os.environ, SOURCE_ENV: str(tree / "src"), "PYTHONPATH": str(tree / "src")}
    subprocess.run([*cmd, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


class TestServerProcess:
    """The working tree's ComfyUI test server in its own process (for old and new code alike), so
    its work is not counted as the measured process's. ``step_delay``: seconds per sampler step."""

    def __init__(self, root: Path, *, step_delay: float = 0.0) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        cmd = [sys.executable, "-m", "comfyui_fake", "--port", str(port), "--root", str(root)]
        if step_delay:
            cmd += ["--step-delay", str(step_delay)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_up(self) -> None:
        import asyncio

        import aiohttp  # (after use_source(): any aiohttp will do to ask)

        async with aiohttp.ClientSession() as http:
            for _ in range(400):
                try:
                    async with http.get(f"{self.url}/history") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"ComfyUI test server at {self.url} did not come up")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
