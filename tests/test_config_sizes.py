"""generation.size: named landscape/portrait sizes, WIDTHxHEIGHT, and the multiple each model's
latent needs (16 for Flux, 8 for SD 1.5 / SDXL), each refused in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dream_window.config import SIZE_MULTIPLE, SIZE_PRESETS, ModelFamily, load_config
from dream_window.errors import ConfigError
from tests.conftest import write_config

GOOD: list[tuple[str, tuple[int, int]]] = [
    ("generation:\n  size: landscape\n", (512, 288)),
    ("generation:\n  size: landscape-large\n", (768, 432)),
    ("generation:\n  size: Portrait\n", (256, 512)),
    ("generation:\n  size: square\n", (512, 512)),
    ("generation:\n  size: 640x368\n", (640, 368)),
    ("generation:\n  size: landscape-large\n  model: sd15\n", (768, 432)),
    ("generation:\n  width: 264\n  height: 512\n  model: sdxl-turbo\n", (264, 512)),
    ("generation:\n  width: 264\n  height: 512\n  model: sd15\n", (264, 512)),
]

NOT_A_SIZE = (
    "generation.size must be 'portrait', 'landscape', 'landscape-large', 'square' or WIDTHxHEIGHT "
    "(e.g. '768x432')"
)
BAD: list[tuple[str, str]] = [
    (
        "generation:\n  size: wide\n",
        f"{NOT_A_SIZE}, got 'wide'",
    ),
    ("generation:\n  size: 640x\n", f"{NOT_A_SIZE}, got '640x'"),
    ("generation:\n  size: x368\n", f"{NOT_A_SIZE}, got 'x368'"),
    ("generation:\n  size: 64x64x64\n", f"{NOT_A_SIZE}, got '64x64x64'"),
    # A digit to str.isdigit() but not to int(): the same one line, not int()'s message.
    ('generation:\n  size: "\u00b2x64"\n', f"{NOT_A_SIZE}, got '\u00b2x64'"),
    ("generation:\n  size: 5\n", "generation.size must be a name or WIDTHxHEIGHT text, got 5"),
    (
        "generation:\n  size: [640, 368]\n",
        "generation.size must be a name or WIDTHxHEIGHT text, got [640, 368]",
    ),
    (
        "generation:\n  size: landscape\n  width: 640\n",
        "generation.size sets width and height: give size, or width and height, not both",
    ),
    (
        "generation:\n  width: 264\n",
        "generation.width must be a multiple of 16 for flux-schnell (its latent is patched 2x2), got 264; "
        "e.g. 256 or 272",
    ),
    ("generation:\n  size: 520x288\n", "generation.width must be a multiple of 16 for flux-schnell"),
    ("generation:\n  size: 510x288\n  model: sd15\n", "generation.width must be a multiple of 8, got 510"),
    ("generation:\n  size: 16x16\n", "generation.width must be between 64 and 4096, got 16"),
]


@pytest.mark.parametrize(("text", "size"), GOOD)
def test_sizes_load(tmp_path: Path, text: str, size: tuple[int, int]) -> None:
    cfg = load_config(write_config(tmp_path, text))
    assert (cfg.generation.width, cfg.generation.height) == size


@pytest.mark.parametrize(("text", "fragment"), BAD)
def test_bad_sizes_are_one_clear_line(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, text))
    assert fragment in info.value.problems[0], info.value.problems
    assert "\n" not in info.value.problems[0]


def test_every_preset_suits_every_model() -> None:
    for width, height in SIZE_PRESETS.values():
        for model in ModelFamily:
            assert width % SIZE_MULTIPLE[model] == 0 and height % SIZE_MULTIPLE[model] == 0


def test_landscape_presets_are_16_to_9() -> None:
    for name in ("landscape", "landscape-large"):
        width, height = SIZE_PRESETS[name]
        assert width * 9 == height * 16


def test_a_size_survives_overrides(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "generation:\n  size: landscape\n"))
    again = cfg.with_overrides(**{"generation.mode": "img2img"})
    assert (again.generation.width, again.generation.height) == (512, 288)
    assert again.generation.mode == "img2img"


def test_the_shipped_config_documents_the_sizes() -> None:
    from dream_window.config import default_config_text

    text = default_config_text()
    for name in ("landscape", "landscape-large", "square"):
        assert f"size: {name}" in text
