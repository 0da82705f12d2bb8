"""A separate reader process decodes current_frame.png in a tight loop while 500 frames are
published: it must never see a partial or undecodable file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dream_window.dream.output import OutputWriter
from dream_window.dream.status import StatusWriter
from dream_window.values.frame import Frame

READER = textwrap.dedent(
    """
    import io, json, sys, time
    from pathlib import Path
    from PIL import Image
    out = Path(sys.argv[1])
    frame, status, stop = out / "current_frame.png", out / "status.json", out / "STOP"
    ok = bad = missing = 0
    errors = []
    while not stop.exists():
        for path, kind in ((frame, "png"), (status, "json")):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                missing += 1
                continue
            try:
                if kind == "png":
                    with Image.open(io.BytesIO(data)) as im:
                        im.load()
                        assert im.size == (64, 128), im.size
                else:
                    assert json.loads(data)["n"] >= 0
                ok += 1
            except Exception as exc:
                bad += 1
                errors.append(repr(exc)[:200])
    print(json.dumps({"ok": ok, "bad": bad, "missing": missing, "errors": errors[:5]}))
    """
)


def test_reader_never_sees_a_partial_frame_or_status(tmp_path: Path) -> None:
    out = tmp_path / "out"
    writer = OutputWriter(out, history_size=20, fsync=False)
    status = StatusWriter(out)
    rng = np.random.default_rng(0)
    writer.publish(
        Frame(Image.fromarray(rng.integers(0, 255, (128, 64, 3), dtype=np.uint8)), "p", "keyframe", 1.0)
    )
    status.write({"n": 0})
    reader = subprocess.Popen([sys.executable, "-c", READER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # let the reader get going
        for i in range(1, 501):
            # Noise compresses badly: every file is large enough that a torn write would be visible.
            noise = Image.fromarray(rng.integers(0, 255, (128, 64, 3), dtype=np.uint8))
            writer.publish(Frame(noise, f"prompt {i}", "keyframe", 1.0))
            status.write({"n": i, "pad": "x" * (i % 97) * 50})
        (out / "STOP").touch()
        stdout, _ = reader.communicate(timeout=60)
    finally:
        reader.kill()
    result = json.loads(stdout)
    assert result["bad"] == 0, result["errors"]
    assert result["missing"] == 0  # os.replace never leaves a moment without the file
    assert result["ok"] > 200, result  # the reader really raced the writer
    assert len(list((out / "frames").iterdir())) == 20
