"""Config errors word for word: the line a user reads must name the key once, in full, and the value.

tests/test_config.py checks a fragment of each message; these check whole lines, for the shapes of
mistake whose wording a fragment cannot pin (a value of the wrong kind altogether, a key that is not
text deep in a section, a rule that spans two keys).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dream_window.config import load_config
from dream_window.errors import ConfigError
from tests.conftest import write_config

EXACT: list[tuple[str, str]] = [
    # A list where a single value belongs.
    ("generation:\n  steps: [1]\n", "generation.steps must be a whole number, got [1]"),
    ("game_detection:\n  enabled: [1]\n", "game_detection.enabled must be true or false, got [1]"),
    # A list where a mapping belongs.
    ("prompts:\n  themes: [1]\n", "prompts.themes must be a mapping of keys to values, got [1]"),
    (
        "comfyui:\n  workflow_mapping: [1]\n",
        "comfyui.workflow_mapping must be a mapping of keys to values, got [1]",
    ),
    # A key YAML reads as a number, two sections deep: where it is, in full.
    ("generation:\n  cache:\n    1: 2\n", "keys must be text, got 1 in generation.cache"),
    ("generation:\n  1: 2\n", "keys must be text, got 1 in generation"),
    # A rule between two keys names the full key once, not the section and then the key again.
    (
        "game_detection:\n  gpu_threshold: 50\n  gpu_resume_threshold: 70\n",
        "game_detection.gpu_resume_threshold must not be above gpu_threshold (50), got 70",
    ),
    ("generation:\n  width: 250\n", "generation.width must be a multiple of 8, got 250"),
]


@pytest.mark.parametrize(("text", "expected"), EXACT, ids=[e[1][:50] for e in EXACT])
def test_a_bad_config_is_told_in_one_exact_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, text))
    assert info.value.problems == [expected]


def test_invalid_yaml_is_told_with_the_file_it_is_in(tmp_path: Path) -> None:
    path = write_config(tmp_path, "generation:\n  mode: [hybrid\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path} line ") and info.value.path == str(path)


def test_an_overlong_problem_line_shows_its_first_300_characters_and_how_long_it_was(tmp_path: Path) -> None:
    # An unknown key in a big section lists every allowed key: more than a line's worth.
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, "generation:\n  xyzzy: 1\n"))
    (line,) = info.value.problems
    shown, sep, rest = line.partition("… (")
    assert sep and rest.endswith(" characters)") and int(rest.removesuffix(" characters)")) > 300
    assert len(shown) == 300 and shown.startswith("unknown key 'generation.xyzzy'; allowed in generation: ")
