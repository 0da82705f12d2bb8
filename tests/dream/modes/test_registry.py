"""The mode registry: the one list of modes, what the config accepts, and adding a mode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dream_window.app import run_dream
from dream_window.config import MODE_NAMES, BackendChoice
from dream_window.dream.modes import MODES, mode_names, register_mode
from dream_window.errors import ConfigError
from tests.conftest import fast_config, hang_guard
from tests.dream.modes.hold import HoldMode


def test_the_config_accepts_exactly_the_registered_modes() -> None:
    assert mode_names() == ["img2img", "interpolate", "hybrid"]
    assert sorted(MODE_NAMES) == sorted(mode_names())


def test_an_unknown_mode_is_a_config_error_naming_the_modes(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"generation\.mode must be one of 'img2img', 'interpolate' or 'hybrid', got 'hold'"
    ):
        fast_config(tmp_path, generation={"mode": "hold"})


@pytest.fixture
def hold_registered() -> Iterator[None]:
    register_mode("hold", HoldMode)  # the one registration line a new mode needs
    yield
    del MODES["hold"]
    MODE_NAMES.remove("hold")


async def test_a_new_mode_is_its_module_plus_one_registration_line(
    tmp_path: Path, hold_registered: None
) -> None:
    config = fast_config(tmp_path, generation={"mode": "hold", "width": 64, "height": 128})
    code = await hang_guard(run_dream(config, backend_choice=BackendChoice.BUILTIN, max_frames=4), 60)
    assert code == 0
    out = tmp_path / "output"
    status = json.loads((out / "status.json").read_text())
    assert status["mode"] == "hold" and status["frame_count"] == 4 and status["state"] == "stopped"
    frames = sorted((out / "frames").glob("frame_*.png"))
    pixels = [np.asarray(Image.open(p)) for p in frames]
    assert len(pixels) == 4 and all(np.array_equal(pixels[0], p) for p in pixels[1:])  # held


def test_a_mode_name_must_be_a_plain_word() -> None:
    with pytest.raises(ValueError, match="plain word"):
        register_mode("two words", HoldMode)
