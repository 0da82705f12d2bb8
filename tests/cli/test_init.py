"""``dream-window init`` writes the user's config in the per-user config folder, and commands
find it when there is no ./config.yaml."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dream_window.cli import main
from dream_window.cli.common import find_config, load
from dream_window.config import load_config, user_config_text
from dream_window.user_dirs import UserDirs
from tests.conftest import dream_window


def test_init_without_a_path_writes_the_user_config_with_absolute_folders(
    dream_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    path = dream_home / "config.yaml"  # DREAM_WINDOW_HOME holds every per-user folder
    assert result.stdout.splitlines() == [
        f"wrote {path}",
        f"frames go to {dream_home / 'output'}; `dream-window doctor` checks the setup",
    ]
    assert not (tmp_path / "config.yaml").exists()
    cfg = load_config(path)
    assert cfg.system.output_dir == dream_home / "output"  # absolute in the file itself
    assert cfg.system.cache_dir == dream_home / "cache"
    assert cfg.generation.mode == "hybrid"

    again = CliRunner().invoke(main, ["init"])
    assert again.exit_code == 2 and "already exists (use --force" in again.stderr
    path.write_text("# mine\n", encoding="utf-8")
    assert CliRunner().invoke(main, ["init", "--force"]).exit_code == 0
    assert path.read_text(encoding="utf-8").startswith("# Dream Window configuration.")


def test_init_with_a_path_keeps_folders_relative_to_that_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "my.yaml"
    result = CliRunner().invoke(main, ["init", str(target)])
    assert (result.exit_code, result.stdout) == (0, f"wrote {target}\n")
    cfg = load_config(target)
    assert cfg.system.output_dir == Path("output")
    assert cfg.output_dir == tmp_path / "sub" / "output"


def test_windows_paths_and_quotes_survive_the_yaml(tmp_path: Path) -> None:
    data = Path(r"C:\Users\o'brien\AppData\Local\dream-window")  # one odd name on this OS
    dirs = UserDirs(config=data, data=data, cache=data / "Cache", logs=data / "Logs", runtime=data)
    system = yaml.safe_load(user_config_text(dirs))["system"]
    assert system["output_dir"] == str(data / "output")
    assert system["cache_dir"] == str(data / "Cache")


def test_config_discovery_order(dream_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config(None) is None  # nothing anywhere: the defaults
    assert load(None).output_dir == tmp_path / "output"

    CliRunner().invoke(main, ["init"])
    assert find_config(None) == dream_home / "config.yaml"
    assert load(None).output_dir == dream_home / "output"

    (tmp_path / "config.yaml").write_text("system:\n  output_dir: here\n", encoding="utf-8")
    assert find_config(None) == Path("config.yaml")  # a checkout's ./config.yaml comes first
    assert load(None).output_dir == tmp_path / "here"

    explicit = tmp_path / "other.yaml"
    assert find_config(explicit) == explicit


def test_run_from_anywhere_uses_the_user_config(dream_home: Path, tmp_path: Path) -> None:
    """As a pipx user would: `init`, then `run` from a folder with no config in it."""
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return dream_window(*args, cwd=elsewhere)

    assert cli("init").returncode == 0
    path = dream_home / "config.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))  # quick and quiet: no viewer port, no waits
    data["viewer"]["enabled"] = data["game_detection"]["enabled"] = False
    data["generation"]["frame_interval"] = 0
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    r = cli("run", "--backend", "builtin", "--max-frames", "1")
    assert r.returncode == 0, r.stderr
    assert (dream_home / "output" / "current_frame.png").is_file()
    assert list(elsewhere.iterdir()) == []
