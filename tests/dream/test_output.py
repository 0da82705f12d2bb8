"""Atomic writes, bounded history, numbering across restarts."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dream_window.dream.output import OutputWriter, check_output_dir, output_dir_error, read_label
from dream_window.errors import ConfigError, FrameWriteError
from dream_window.file_ops import atomic_write_bytes
from dream_window.values.frame import Frame, FrameLabel


def _img(v: int) -> Frame:
    return Frame(Image.new("RGB", (16, 32), (v, 255 - v, 128)), f"prompt {v}", "keyframe", 1.0)


def test_history_is_bounded_oldest_first_and_numbering_continues_after_restart(tmp_path: Path) -> None:
    w = OutputWriter(tmp_path, history_size=5, fsync=False)
    for i in range(12):
        w.publish(_img(i))
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(8, 13)]
    with Image.open(tmp_path / "current_frame.png") as cur:
        assert cur.getpixel((0, 0)) == (11, 244, 128)
    w2 = OutputWriter(tmp_path, history_size=3, fsync=False)  # restart with a smaller bound
    assert sorted(w2.history_indices()) == [10, 11, 12]
    published = w2.publish(_img(99))
    assert published.index == 13 and published.path.name == "frame_000013.png"
    assert published.png == published.path.read_bytes()  # what other writers copy


def test_stale_temp_files_from_a_killed_writer_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / ".current_frame.png.abc.tmp").write_bytes(b"half")
    OutputWriter(tmp_path, history_size=3, fsync=False)
    assert not list(tmp_path.glob(".*.tmp"))


def test_locked_target_is_retried_with_backoff(tmp_path: Path) -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky_replace(src: str, dst: Path) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise PermissionError(errno.EACCES, "sharing violation")
        os.replace(src, dst)

    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"data", replace=flaky_replace, sleep=sleeps.append)
    assert target.read_bytes() == b"data"
    assert len(calls) == 3 and sleeps == sorted(sleeps) and len(sleeps) == 2


def test_permanently_locked_target_raises_our_error_and_leaves_no_temp(tmp_path: Path) -> None:
    def locked(src: str, dst: Path) -> None:
        raise PermissionError(errno.EACCES, "sharing violation")

    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(FrameWriteError, match="still locked"):
        atomic_write_bytes(target, b"new", replace=locked, sleep=lambda s: None)
    assert target.read_bytes() == b"old"  # never lost
    assert not list(tmp_path.glob(".*.tmp"))


def test_unwritable_folder_raises_our_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FrameWriteError, match="cannot write"):
        atomic_write_bytes(blocker / "sub" / "f.png", b"x")


prompts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=300,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prompt=prompts,
    seed=st.none() | st.integers(0, 2**63 - 1),
    kind=st.sampled_from(
        ["txt2img", "img2img", "keyframe", "inbetween", "injected", "crossfade", "transition"]
    ),
    mode=st.sampled_from(["img2img", "interpolate", "hybrid"]),
)
def test_every_published_png_carries_its_label(
    tmp_path: Path, prompt: str, seed: int | None, kind: str, mode: str
) -> None:
    w = OutputWriter(tmp_path, history_size=3, fsync=False)
    params = {"seed": seed, "steps": 4, "negative_prompt": "blurry"} if seed is not None else {}
    frame = Frame(Image.new("RGB", (8, 8)), prompt, kind, 1.0, params, None, mode, "ComfyUI (sd15)", "sd15")  # type: ignore[arg-type]
    published = w.publish(frame)
    expected = FrameLabel(prompt, published.index, seed, mode, kind, "ComfyUI (sd15)", "sd15")
    for path in (published.path, w.current_path):  # both files, as any reader would open them
        _, label = read_label(path)
        assert label == expected
        with Image.open(path) as img:
            assert img.text["prompt"] == prompt  # the plain text, the key tools look for
            assert img.text["parameters"].startswith(prompt)
            assert img.text["Software"].startswith("dream-window ")


def test_a_picture_without_our_text_has_no_label(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    assert read_label(path)[1] is None


def test_output_writer_names_the_key_for_a_file_where_history_goes(tmp_path: Path) -> None:
    (tmp_path / "frames").write_text("not a folder")
    with pytest.raises(ConfigError) as err:
        OutputWriter(tmp_path, history_size=3, fsync=False)
    assert str(err.value) == (
        f"system.output_dir: cannot use {tmp_path} as the output folder: File exists ({tmp_path / 'frames'})"
    )


def test_check_output_dir_makes_the_folder_and_leaves_no_probe(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    check_output_dir(out)
    assert sorted(p.name for p in out.iterdir()) == ["frames"]


def test_check_output_dir_accepts_a_folder_made_before(tmp_path: Path) -> None:
    out = tmp_path / "out"
    check_output_dir(out)
    check_output_dir(out)  # every start checks the folder the last run made
    assert sorted(p.name for p in out.iterdir()) == ["frames"]


def test_check_output_dir_names_the_key_for_a_file_in_the_folders_place(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("not a folder")
    with pytest.raises(ConfigError) as err:
        check_output_dir(out)
    assert str(err.value) == f"system.output_dir: cannot use {out} as the output folder: File exists"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.EACCES, "Permission denied"), "Permission denied"),
        (OSError(errno.EACCES, "Permission denied", "/srv/out"), "Permission denied"),
        (
            OSError(errno.EACCES, "Permission denied", "/srv/out/frames"),
            "Permission denied (/srv/out/frames)",
        ),
        (OSError("the share went away"), "the share went away"),  # no strerror: the message
    ],
    ids=["no-file", "the-folder", "a-file-in-it", "message-only"],
)
def test_an_output_dir_error_names_the_key_the_folder_and_the_reason(error: OSError, reason: str) -> None:
    err = output_dir_error(Path("/srv/out"), error)
    assert str(err) == f"system.output_dir: cannot use /srv/out as the output folder: {reason}"


def test_a_picture_in_another_format_has_no_label(tmp_path: Path) -> None:
    path = tmp_path / "plain.bmp"
    Image.new("RGB", (8, 4)).save(path)
    image, label = read_label(path)
    assert (image.size, label) == ((8, 4), None)
