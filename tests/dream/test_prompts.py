"""PromptManager: file parsing, weights, rotation by frames and by time, no repeats, themes."""

from __future__ import annotations

import logging
import random
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from dream_window.config import PromptsConfig
from dream_window.dream.prompts import (
    PromptManager,
    WeightedPrompt,
    check_prompt,
    load_prompts_file,
    parse_prompt_line,
    part_of_day,
)
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


def test_only_the_last_separator_splits_off_the_weight() -> None:
    p = parse_prompt_line("ratio 2::1 sky :: 3", where="x")
    assert p == WeightedPrompt("ratio 2::1 sky", 3.0)


def test_a_long_bad_weight_is_clipped_to_40_characters_in_the_message() -> None:
    with pytest.raises(ConfigError) as info:
        parse_prompt_line("a :: " + "x" * 41, where="p.txt line 1")
    shown = "x" * 40 + "… (41 characters)"
    assert str(info.value) == f"p.txt line 1: weight must be a number, got {shown!r}"


def test_the_largest_weight_is_allowed_and_one_more_is_not() -> None:
    assert parse_prompt_line("a :: 1000000", where="x") == WeightedPrompt("a", 1_000_000.0)
    with pytest.raises(ConfigError) as info:
        parse_prompt_line("a :: 1000000.5", where="x")
    assert str(info.value) == "x: weight must be greater than 0 and at most 1e+06, got 1000000.5"


@pytest.mark.parametrize(
    ("hour", "part"),
    [
        (0, "night"),
        (4, "night"),
        (5, "morning"),
        (6, "morning"),
        (11, "morning"),
        (12, "afternoon"),
        (16, "afternoon"),
        (17, "evening"),
        (21, "evening"),
        (22, "night"),
        (23, "night"),
    ],
)
def test_part_of_day_boundaries(hour: int, part: str) -> None:
    assert part_of_day(hour) == part


def test_morning_theme_starts_at_five_and_afternoon_at_noon(clock: FakeClock) -> None:
    themes = {"morning": ["sunrise"], "afternoon": ["high sun"], "night": ["stars"]}

    def at(hour: int) -> str:
        return PromptManager(
            PromptsConfig(list=["day"], themes=themes),  # type: ignore[arg-type]
            clock=clock,
            rng=random.Random(0),
            local_now=lambda: datetime(2026, 1, 1, hour, 0),
        ).current

    assert [at(h) for h in (4, 5, 11, 12)] == ["stars", "sunrise", "sunrise", "high sun"]


def test_a_relative_prompts_file_is_found_under_base_dir(clock: FakeClock, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "prompts.txt").write_text("nebula :: 2\nocean\n", encoding="utf-8")
    m = PromptManager(
        PromptsConfig(list=["ignored"], file=Path("prompts.txt")),
        clock=clock,
        rng=random.Random(0),
        base_dir=tmp_path / "conf",
    )
    assert m.prompts == [WeightedPrompt("nebula", 2.0), WeightedPrompt("ocean", 1.0)]


def test_an_absolute_prompts_file_ignores_base_dir(clock: FakeClock, tmp_path: Path) -> None:
    f = tmp_path / "prompts.txt"
    f.write_text("nebula\n", encoding="utf-8")
    m = PromptManager(
        PromptsConfig(file=f), clock=clock, rng=random.Random(0), base_dir=tmp_path / "elsewhere"
    )
    assert m.prompts == [WeightedPrompt("nebula", 1.0)] and m.current == "nebula"


def test_an_empty_prompt_list_is_refused_with_a_hint(clock: FakeClock) -> None:
    with pytest.raises(ConfigError) as info:
        manager(clock, list=["# only a comment", "  "])
    assert str(info.value) == "prompts.list must hold at least one prompt (or set prompts.file)"


def test_a_bad_list_entry_is_named_by_its_index(clock: FakeClock) -> None:
    with pytest.raises(ConfigError) as info:
        manager(clock, list=["ok", "a :: lots"])
    assert str(info.value) == "prompts.list[1]: weight must be a number, got 'lots'"


def test_a_bad_theme_entry_is_named_by_theme_and_index(clock: FakeClock) -> None:
    with pytest.raises(ConfigError) as info:
        manager(clock, list=["ok"], themes={"night": ["stars", "moon", "a\x00b"]})
    assert str(info.value) == "prompts.themes.night[2]: prompt must not contain control characters"


def test_every_change_is_logged_with_its_reason(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    m = manager(clock, list=["a", "b"], rotate_every_frames=1)
    caplog.set_level(logging.INFO, logger="dream_window.dream.prompts")
    m.set_prompt("my own")
    m.skip()
    lines = [r.getMessage() for r in caplog.records if r.name == "dream_window.dream.prompts"]
    assert lines[0] == "prompt (set by user): my own"
    assert lines[1] in {"prompt (skip): a", "prompt (skip): b"}
    assert len(lines) == 2


def test_a_typed_prompt_is_announced_with_how_long_it_holds(clock: FakeClock) -> None:
    events = EventBus()
    m = PromptManager(
        PromptsConfig(list=["a", "b"], hold_minutes=5), clock=clock, rng=random.Random(0), events=events
    )
    seen: list[PromptChanged] = []
    events.subscribe(PromptChanged, seen.append)
    m.set_prompt("mine")
    assert [(e.prompt, e.why, e.held_s) for e in seen] == [("mine", "set by user", 300.0)]


def test_a_one_minute_hold_lasts_sixty_seconds(clock: FakeClock) -> None:
    m = manager(clock, list=["a", "b"], rotate_every_frames=1, hold_minutes=1)
    m.set_prompt("mine")
    assert m.held_for == 60.0
    clock.advance(60)
    assert m.maybe_rotate() is True and m.current in {"a", "b"}


def test_maybe_rotate_reports_false_while_held_and_true_when_the_hold_ends(clock: FakeClock) -> None:
    events = EventBus()
    m = PromptManager(
        PromptsConfig(list=["a", "b"], rotate_every_frames=1, hold_minutes=2),
        clock=clock,
        rng=random.Random(0),
        events=events,
    )
    seen: list[PromptChanged] = []
    events.subscribe(PromptChanged, seen.append)
    m.set_prompt("mine")
    clock.advance(119)
    assert m.maybe_rotate() is False and m.current == "mine"
    clock.advance(1)
    assert m.maybe_rotate() is True
    assert [(e.why, e.held_s) for e in seen] == [("set by user", 120.0), ("hold ended", None)]
    assert seen[-1].prompt == m.current and m.current in {"a", "b"}


@pytest.mark.parametrize("seed", range(20))
def test_when_a_hold_ends_the_held_prompt_is_not_picked_again(clock: FakeClock, seed: int) -> None:
    m = manager(clock, seed=seed, list=["a", "b"], rotate_every_frames=0, hold_minutes=1)
    m.set_prompt("a")
    clock.advance(60)
    assert m.maybe_rotate() is True
    assert m.current == "b"


def test_maybe_rotate_reports_a_rotation_and_names_it(clock: FakeClock) -> None:
    events = EventBus()
    m = PromptManager(
        PromptsConfig(list=["a", "b"], rotate_every_frames=0, rotate_every_minutes=2),
        clock=clock,
        rng=random.Random(0),
        events=events,
    )
    seen: list[PromptChanged] = []
    events.subscribe(PromptChanged, seen.append)
    first = m.current
    clock.advance(60)
    assert m.maybe_rotate() is False and m.current == first
    clock.advance(60)
    assert m.maybe_rotate() is True and m.current != first
    assert [(e.prompt, e.why, e.held_s) for e in seen] == [(m.current, "rotation", None)]
    assert m.maybe_rotate() is False  # the timer restarted with the new prompt


def test_rotation_by_time_happens_at_exactly_the_interval(clock: FakeClock) -> None:
    m = manager(clock, list=["a", "b"], rotate_every_frames=0, rotate_every_minutes=1)
    first = m.current
    clock.advance(59.5)
    assert m.maybe_rotate() is False and m.current == first
    clock.advance(0.5)  # exactly 60 s on this prompt
    assert m.maybe_rotate() is True and m.current != first


def test_rotation_by_time_works_for_intervals_under_a_minute(clock: FakeClock) -> None:
    m = manager(clock, list=["a", "b"], rotate_every_frames=0, rotate_every_minutes=0.5)
    first = m.current
    clock.advance(30)
    assert m.maybe_rotate() is True and m.current != first


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("   ", "prompt must not be empty"),
        ("a\x07b", "prompt must not contain control characters"),
        ("fog \ud800", "prompt must be valid Unicode text (it holds a lone surrogate)"),
        ("x" * 2001, "prompt must be at most 2000 characters, got 2001"),
    ],
)
def test_check_prompt_error_messages_are_exact(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_prompt(text)
    assert str(info.value) == message


def test_tabs_and_newlines_inside_a_prompt_are_allowed() -> None:
    assert check_prompt("  misty\tforest\r\nat dawn \n") == "misty\tforest\r\nat dawn"


def test_a_prompt_of_exactly_the_maximum_length_is_allowed() -> None:
    assert check_prompt("x" * 2000) == "x" * 2000
