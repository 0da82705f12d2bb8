"""Configuration: defaults load, bad values give one clear line, unknown keys suggest a fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dream_window.config import DreamConfig, load_config
from dream_window.errors import ConfigError
from tests.conftest import write_config

REPO = Path(__file__).resolve().parents[1]

# (yaml text, a fragment the first problem line must contain)
BAD_CONFIGS: list[tuple[str, str]] = [
    ("generation:\n  denoise: 1.7\n", "generation.denoise must be between 0 and 1, got 1.7"),
    ("generation:\n  denoise: -0.1\n", "generation.denoise must be between 0 and 1, got -0.1"),
    (
        "generation:\n  mode: dreamy\n",
        "generation.mode must be one of 'img2img', 'interpolate' or 'hybrid', got 'dreamy'",
    ),
    ("generation:\n  model: flux-dev\n", "generation.model must be one of"),
    ("generation:\n  width: 250\n", "generation.width must be a multiple of 8, got 250"),
    ("generation:\n  height: 32\n", "generation.height must be between 64 and 4096, got 32"),
    ("generation:\n  steps: 0\n", "generation.steps must be between 1 and 200, got 0"),
    ("generation:\n  steps: many\n", "generation.steps must be a whole number, got 'many'"),
    ("generation:\n  cfg: hot\n", "generation.cfg must be a number, got 'hot'"),
    ("generation:\n  seed_policy: lucky\n", "generation.seed_policy must be one of"),
    ("generation:\n  frame_interval: -1\n", "generation.frame_interval must be between 0 and 3600, got -1"),
    ("generation:\n  buffer_size: 0\n", "generation.buffer_size must be between 1 and 1000, got 0"),
    (
        "generation:\n  cache:\n    max_size: 0\n",
        "generation.cache.max_size must be between 1 and 1000000, got 0",
    ),
    (
        "generation:\n  cache:\n    injection_probability: 2\n",
        "generation.cache.injection_probability must be between 0 and 1, got 2",
    ),
    (
        "generation:\n  cache:\n    max_sise: 10\n",
        "unknown key 'generation.cache.max_sise' (did you mean 'generation.cache.max_size'?)",
    ),
    ("generaton:\n  mode: hybrid\n", "unknown key 'generaton' (did you mean 'generation'?)"),
    ("system:\n  comfyui_url: localhost:8188\n", "must be an http:// or https:// URL, got 'localhost:8188'"),
    ("system:\n  comfyui_url: []\n", "system.comfyui_url must name at least one URL"),
    ("system:\n  backend: gpu\n", "system.backend must be one of"),
    (
        "game_detection:\n  gpu_threshold: 150\n",
        "game_detection.gpu_threshold must be between 1 and 100, got 150",
    ),
    (
        "game_detection:\n  gpu_threshold: 50\n  gpu_resume_threshold: 70\n",
        "gpu_resume_threshold must not be above gpu_threshold",
    ),
    (
        "game_detection:\n  known_games: eldenring.exe\n",
        "game_detection.known_games must be a list, got 'eldenring.exe'",
    ),
    ("game_detection:\n  check_interval: 0\n", "game_detection.check_interval must be greater than 0"),
    ("game_detection:\n  enabled: maybe\n", "game_detection.enabled must be true or false, got 'maybe'"),
    ("prompts:\n  rotate_every_frames: -5\n", "prompts.rotate_every_frames must be at least 0, got -5"),
    ("viewer:\n  port: 70000\n", "viewer.port must be between 0 and 65535, got 70000"),
    ("generation: 5\n", "generation must be a mapping of keys to values, got 5"),
    ("- just\n- a list\n", "the config must be a mapping of sections"),
    ("generation:\n  mode: [hybrid\n", "invalid YAML"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS, ids=[e[1][:40] for e in BAD_CONFIGS])
def test_bad_config_names_key_value_and_allowed(tmp_path: Path, text: str, expected: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value), info.value.problems


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write_config(tmp_path, "generation:\n  denoise: 3\n  steps: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    joined = "\n".join(info.value.problems)
    assert "generation.denoise" in joined and "generation.steps" in joined


def test_shipped_config_is_valid_and_matches_the_packaged_default() -> None:
    repo_cfg = REPO / "config.yaml"
    packaged = REPO / "src" / "dream_window" / "data" / "config.yaml"
    assert repo_cfg.read_text() == packaged.read_text(), (
        "run: cp config.yaml src/dream_window/data/config.yaml"
    )
    cfg = load_config(repo_cfg)
    assert cfg.generation.mode == "hybrid"
    assert (cfg.generation.width, cfg.generation.height) == (256, 512)
    # Every key of the model is documented in the shipped file (the file sets all of them).
    assert cfg.model_dump(exclude={"base_dir"}) == DreamConfig(base_dir=cfg.base_dir).model_dump(
        exclude={"base_dir"}
    )


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg = load_config(write_config(sub, "system:\n  output_dir: out\n"))
    assert cfg.output_dir == sub.resolve() / "out"


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "{}"))
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is an implementation detail
        cfg.generation.denoise = 0.9  # type: ignore[misc]


def test_overrides_are_validated(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "{}"))
    assert cfg.with_overrides(**{"generation.mode": "img2img"}).generation.mode == "img2img"
    with pytest.raises(ConfigError, match=r"generation\.mode must be one of"):
        cfg.with_overrides(**{"generation.mode": "nope"})


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dream-window init"):
        load_config(tmp_path / "nope.yaml")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dream_window", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_bad_config_exits_2_with_one_clear_line_and_no_traceback(tmp_path: Path) -> None:
    path = write_config(tmp_path, "generation:\n  denoise: 1.7\n")
    r = _cli("run", "--config", str(path), "--max-frames", "1", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "config error: generation.denoise must be between 0 and 1, got 1.7"
    assert "Traceback" not in r.stderr + r.stdout


def test_init_writes_a_valid_default_and_refuses_to_overwrite(tmp_path: Path) -> None:
    r = _cli("init", "my.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = load_config(tmp_path / "my.yaml")
    assert cfg.generation.mode == "hybrid"
    r2 = _cli("init", "my.yaml", cwd=tmp_path)
    assert r2.returncode == 2 and "already exists" in r2.stderr


def test_home_dir_is_the_platform_data_folder_unless_the_old_one_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs

    from dream_window.config import home_dir

    monkeypatch.delenv("DREAM_WINDOW_HOME")
    for var in ("HOME", "USERPROFILE"):  # Path.home() on POSIX and Windows
        monkeypatch.setenv(var, str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert home_dir() == Path(platformdirs.user_data_dir("dream-window", appauthor=False))
    if sys.platform.startswith("linux"):
        assert home_dir() == tmp_path / "data" / "dream-window"

    (tmp_path / ".dream-window").mkdir()  # an existing user keeps the folder they have
    assert home_dir() == tmp_path / ".dream-window"

    monkeypatch.setenv("DREAM_WINDOW_HOME", str(tmp_path / "elsewhere"))
    assert home_dir() == tmp_path / "elsewhere"
