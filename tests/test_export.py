"""``dream-window export``: real gif and mp4 files from a real frame history, probed with ffmpeg."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dream_window.cli import main
from dream_window.export import parse_duration
from tests.web.conftest import publish_frames


@pytest.fixture
async def history(tmp_path: Path) -> Path:
    """An output folder holding 5 published frames."""
    controller = await publish_frames(tmp_path / "dream", 5)
    return controller.output.dir


def export(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["export", *args])
    return result.exit_code, result.output


def frames_in(path: Path) -> int:
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return n


def test_gif_with_inbetweens(history: Path, tmp_path: Path) -> None:
    out = tmp_path / "dream.gif"
    code, output = export("-o", str(history), "--inbetweens", "2", "--fps", "10", str(out))
    assert code == 0, output
    assert out.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    assert frames_in(out) == 5 + 4 * 2 == 13
    assert "13 frames" in output
    assert not list(tmp_path.glob(".*partial*"))


def test_mp4_newest_frames_scaled(history: Path, tmp_path: Path) -> None:
    out = tmp_path / "clips" / "dream.mp4"
    code, output = export("-o", str(history), "--frames", "3", "--width", "99", str(out))
    assert code == 0, output
    assert frames_in(out) == 3
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    reader.close()
    assert tuple(meta["size"]) == (100, 150)  # 99 → even for yuv420p; 128x192 keeps its aspect


def test_last_duration_selects_by_publish_time(history: Path, tmp_path: Path) -> None:
    frames = sorted((history / "frames").glob("frame_*.png"))
    old = time.time() - 3600
    for p in frames[:3]:
        os.utime(p, (old, old))
    out = tmp_path / "recent.gif"
    code, output = export("-o", str(history), "--last", "10m", str(out))
    assert code == 0, output
    assert frames_in(out) == 2


def test_no_frames_is_a_clear_error(tmp_path: Path) -> None:
    code, output = export("-o", str(tmp_path / "empty"), str(tmp_path / "x.mp4"))
    assert code == 1
    assert output.strip().startswith("error: no frames to export in")
    assert "Traceback" not in output and not (tmp_path / "x.mp4").exists()


def test_nothing_recent_is_a_clear_error(history: Path, tmp_path: Path) -> None:
    for p in (history / "frames").glob("frame_*.png"):
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    code, output = export("-o", str(history), "--last", "90s", str(tmp_path / "x.gif"))
    assert code == 1 and "no frames published in the last 90s" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["out.avi"], "must end in .mp4 or .gif"),
        (["--last", "soon", "out.mp4"], "expected a duration"),
        (["--last", "0s", "out.mp4"], "more than 0"),
        (["--frames", "0", "out.mp4"], "--frames"),
        (["--last", "1m", "--frames", "3", "out.mp4"], "not both"),
        (["--fps", "0", "out.gif"], "--fps"),
        ([], "Missing argument"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    code, output = export("-o", str(tmp_path), *args)
    assert code == 2 and message in output


def test_parse_duration() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172_800
    assert parse_duration("45") == 45
    for bad in ("", "m", "10x", "1h-5m", "-3m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_unwritable_destination_is_a_clear_error(history: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    code, output = export("-o", str(history), str(blocker / "sub" / "out.gif"))
    assert code == 1, output
    assert output.strip().startswith("error: cannot create") and str(blocker) in output
    assert "Traceback" not in output


# --- without the export extra ------------------------------------------------------------------

# A Python that cannot import imageio_ffmpeg, as on a machine without `dream-window[export]`:
# None in sys.modules makes `import imageio_ffmpeg` raise ImportError.
_WITHOUT_FFMPEG = (
    "import sys; sys.modules['imageio_ffmpeg'] = None; sys.argv[0] = 'dream-window'; "
    "from dream_window.__main__ import main; main()"
)


def export_without_extra(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_FFMPEG, "export", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_gif_needs_no_extra(history: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain.gif"
    r = export_without_extra("-o", str(history), "--inbetweens", "1", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5 + 4 * 1
        assert gif.info.get("loop") == 0  # loops for ever
        # The last frame decodes close to the newest history frame: one shared palette, dithered.
        gif.seek(gif.n_frames - 1)
        shown = np.asarray(gif.convert("RGB"), dtype=np.float32)
    newest = sorted((history / "frames").glob("frame_*.png"))[-1]
    with Image.open(newest) as img:
        source = np.asarray(img.convert("RGB"), dtype=np.float32)
    assert np.abs(shown - source).mean() < 12, "the GIF's colours are far from the frames'"


def test_mp4_without_the_extra_says_what_to_install(history: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    r = export_without_extra("-o", str(history), str(out), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        "error: mp4 export needs ffmpeg: pip install 'dream-window[export]' "
        "(or export a .gif, which needs nothing more)"
    )
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
