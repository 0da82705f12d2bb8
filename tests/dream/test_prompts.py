"""PromptManager: file parsing, weights, rotation by frames and by time, no repeats, themes."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from dream_window.config import PromptsConfig
from dream_window.dream.prompts import PromptManager, load_prompts_file, parse_prompt_line
from dream_window.errors import ConfigError
from dream_window.events import EventBus, PromptChanged
from tests.conftest import FakeClock


def manager(clock: FakeClock, seed: int = 0, **cfg: object) -> PromptManager:
    return PromptManager(PromptsConfig(**cfg), clock=clock, rng=random.Random(seed))  # type: ignore[arg-type]


def test_parse_line_weights_and_comments() -> None:
    assert parse_prompt_line("  # a comment", where="x") is None
    assert parse_prompt_line("   ", where="x") is None
    p = parse_prompt_line("misty forest :: 2.5", where="x")
    assert p is not None and p.text == "misty forest" and p.weight == 2.5
    with pytest.raises(ConfigError, match=r"f line 3: weight must be a number, got 'lots'"):
        parse_prompt_line("a :: lots", where="f line 3")
    with pytest.raises(ConfigError, match="greater than 0"):
        parse_prompt_line("a :: 0", where="x")


def test_prompts_file(tmp_path: Path) -> None:
    f = tmp_path / "prompts.txt"
    f.write_text("# themes\nocean waves\n\nnebula :: 3\n", encoding="utf-8")
    ps = load_prompts_file(f)
    assert [(p.text, p.weight) for p in ps] == [("ocean waves", 1.0), ("nebula", 3.0)]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no prompts"):
        load_prompts_file(tmp_path / "empty.txt")
    with pytest.raises(ConfigError, match=r"prompts\.file .*missing\.txt does not exist"):
        load_prompts_file(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        ("inf", "at most 1e+06, got inf"),
        ("nan", "got nan"),
        ("-inf", "got -inf"),
        ("1e400", "got 1e400"),
        ("1e7", "at most 1e+06, got 1e7"),
        ("x" * 5000, "got 'xxxx"),
    ],
)
def test_weights_that_are_not_finite_positive_numbers_are_refused_naming_the_line(
    weight: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_prompt_line(f"nebula :: {weight}", where="p.txt line 4")
    message = str(info.value)
    assert message.startswith("p.txt line 4: weight must be") and expected in message
    assert len(message) < 200


def test_a_prompt_line_is_checked_like_a_typed_prompt() -> None:
    with pytest.raises(ConfigError, match=r"p\.txt line 2: prompt must not contain control characters"):
        parse_prompt_line("a\x00b", where="p.txt line 2")
    with pytest.raises(ConfigError, match=r"at most 2000 characters, got 2001"):
        parse_prompt_line("a" * 2001, where="p.txt line 2")


@pytest.mark.parametrize(
    ("encoded", "ok"),
    [
        (b"ocean :: 2\nnebula\n", True),
        (b"\xef\xbb\xbfocean :: 2\nnebula\n", True),  # UTF-8 with a BOM (Notepad, PowerShell 7 utf8BOM)
        ("ocean :: 2\nnebula\n".encode("utf-16"), True),  # Windows PowerShell 5: `echo ... > prompts.txt`
        ("ocean :: 2\nnebula\n".encode("utf-16-le"), True),  # UTF-16 without a BOM
        ("océan :: 2\nnebula\n".encode("latin-1"), False),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-bom", "utf-16-le", "latin-1"],
)
def test_prompts_file_encodings(tmp_path: Path, encoded: bytes, ok: bool) -> None:
    f = tmp_path / "prompts.txt"
    f.write_bytes(encoded)
    if ok:
        assert [(p.text, p.weight) for p in load_prompts_file(f)] == [("ocean", 2.0), ("nebula", 1.0)]
        return
    with pytest.raises(ConfigError) as info:
        load_prompts_file(f)
    assert str(info.value) == (
        f"prompts.file {f} is not UTF-8 text (byte 0xE9 on line 1, at position 2: it looks like "
        "Latin-1/Windows-1252 or another legacy encoding); save it as UTF-8"
    )


def test_prompts_file_that_is_binary_or_huge_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "prompts.png"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(ConfigError, match=r"prompts\.file .*prompts\.png is not a text file"):
        load_prompts_file(f)
    f.write_bytes(b"a\n" * (4 * 1024 * 1024 + 1))
    with pytest.raises(ConfigError, match=r"is larger than 8192 KiB"):
        load_prompts_file(f)


def test_rotates_every_n_frames_and_never_repeats_immediately(clock: FakeClock) -> None:
    m = manager(clock, list=["a", "b", "c"], rotate_every_frames=3)
    seen = [m.current]
    for _ in range(60):
        m.frame_done()
        seen.append(m.current)
    changes = [i for i in range(1, len(seen)) if seen[i] != seen[i - 1]]
    assert changes == list(range(3, 61, 3))  # a new prompt exactly every 3 frames, never the same twice
    assert m.changes == 20


def test_rotates_by_time(clock: FakeClock) -> None:
    m = manager(clock, list=["a", "b"], rotate_every_frames=0, rotate_every_minutes=2)
    first = m.current
    clock.advance(119)
    m.frame_done()
    assert m.current == first
    clock.advance(2)
    m.frame_done()
    assert m.current != first


def test_weights_are_respected_statistically(clock: FakeClock) -> None:
    m = manager(clock, seed=42, list=["heavy :: 4", "light :: 1", "other :: 1"], rotate_every_frames=1)
    counts: Counter[str] = Counter()
    for _ in range(6000):
        m.frame_done()
        counts[m.current] += 1
    # Without immediate repeats the heavy prompt cannot exceed half; it must still clearly dominate.
    assert counts["heavy"] > 1.5 * counts["light"]
    assert abs(counts["light"] - counts["other"]) < 0.15 * counts["light"]


def test_themes_by_time_of_day(clock: FakeClock) -> None:
    m = PromptManager(
        PromptsConfig(list=["day"], themes={"night": ["stars"], "morning": ["sunrise"]}),
        clock=clock,
        rng=random.Random(0),
        local_now=lambda: datetime(2026, 1, 1, 23, 30),
    )
    assert m.current == "stars"
    m2 = PromptManager(
        PromptsConfig(list=["day"], themes={"night": ["stars"]}),
        clock=clock,
        rng=random.Random(0),
        local_now=lambda: datetime(2026, 1, 1, 14, 0),
    )
    assert m2.current == "day"  # no afternoon theme: the main list


def test_skip_and_set_notify_listeners(clock: FakeClock) -> None:
    events = EventBus()
    m = PromptManager(PromptsConfig(list=["a", "b"]), clock=clock, rng=random.Random(0), events=events)
    seen: list[tuple[str, str]] = []
    events.subscribe(PromptChanged, lambda e: seen.append((e.prompt, e.why)))
    before = m.current
    assert m.skip() != before
    m.set_prompt("  my own prompt ")
    assert m.current == "my own prompt"
    assert [w for _, w in seen] == ["skip", "set by user"]
    with pytest.raises(ValueError):
        m.set_prompt("   ")


def test_a_typed_prompt_holds_against_rotation_then_lets_go(clock: FakeClock) -> None:
    m = manager(clock, list=["a", "b", "c"], rotate_every_frames=2, rotate_every_minutes=1, hold_minutes=5)
    m.set_prompt("my own")
    for _ in range(50):  # far past both rotation budgets
        m.frame_done()
        clock.advance(5)
    assert m.current == "my own" and m.held_for == pytest.approx(50.0)
    hold = m.describe_hold()
    assert hold is not None and hold["prompt"] == "my own" and hold["remaining_s"] == 50.0
    clock.advance(50)
    m.frame_done()  # the hold is over: the dream moves on, and rotation counts from here
    assert m.current in {"a", "b", "c"} and m.held_for is None and m.describe_hold() is None
    moved_on = m.current
    m.frame_done()
    assert m.current == moved_on  # one frame on it, not two: the rotation timer restarted
    m.frame_done()
    assert m.current != moved_on


def test_hold_minutes_zero_holds_until_skipped(clock: FakeClock) -> None:
    m = manager(clock, list=["a", "b"], rotate_every_frames=1, hold_minutes=0)
    m.set_prompt("mine")
    clock.advance(10**6)
    m.frame_done()
    assert m.current == "mine"
    assert m.describe_hold() == {"prompt": "mine", "until_skipped": True, "remaining_s": None, "until": None}
    assert m.skip() in {"a", "b"} and m.held_for is None


def test_a_continued_prompt_is_not_held(clock: FakeClock) -> None:
    m = manager(clock, list=["a", "b"], rotate_every_frames=1)
    m.continue_with("a")
    assert m.held_for is None
    m.frame_done()
    assert m.current == "b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("   ", "must not be empty"),
        ("x" * 2001, "at most 2000 characters, got 2001"),
        ("a\x00b", "control characters"),
        ("fog \ud800", "lone surrogate"),
    ],
)
def test_a_prompt_that_cannot_be_one_is_refused_before_anything_changes(
    clock: FakeClock, text: str, message: str
) -> None:
    m = manager(clock, list=["a"])
    with pytest.raises(ValueError, match=message):
        m.set_prompt(text)
    assert m.current == "a" and m.held_for is None


def test_a_bad_line_in_a_prompts_file_is_named_by_its_line_number(tmp_path: Path) -> None:
    f = tmp_path / "prompts.txt"
    f.write_text("# themes\nocean waves\nnebula :: lots\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_prompts_file(f)
    assert str(info.value) == f"{f} line 3: weight must be a number, got 'lots'"


def test_a_continued_prompt_is_announced_as_continued(clock: FakeClock) -> None:
    events = EventBus()
    m = PromptManager(PromptsConfig(list=["a", "b"]), clock=clock, rng=random.Random(0), events=events)
    seen: list[PromptChanged] = []
    events.subscribe(PromptChanged, seen.append)
    m.continue_with("  the last run's prompt ")
    assert [(e.prompt, e.why, e.held_s) for e in seen] == [("the last run's prompt", "continued", None)]
