"""``dream-window autostart``: the host and the command runner are injected through the click
context (``main(obj=AutostartDeps(...))``), so every platform is driven here and no real
schtasks, systemctl or launchctl runs."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner, Result

from dream_window.autostart import TASK_NAME, UNIT_NAME, CommandResult, Host
from dream_window.cli import main
from dream_window.cli.autostart import AutostartDeps
from tests.autostart.conftest import FakeRunner


def invoke(host: Host, runner: FakeRunner, *args: str) -> Result:
    return CliRunner().invoke(main, ["autostart", *args], obj=AutostartDeps(host, runner))


def linux(home: Path) -> Host:
    return Host(platform="linux", home=home, env={}, python=Path(sys.executable), uid=1000)


def user_config(dream_home: Path) -> Path:
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    return dream_home / "config.yaml"


def test_dry_run_prints_the_file_and_the_exact_commands_and_changes_nothing(
    dream_home: Path, tmp_path: Path
) -> None:
    config = user_config(dream_home)
    runner = FakeRunner()
    result = invoke(linux(tmp_path / "home"), runner, "enable", "--dry-run")
    assert result.exit_code == 0, result.output
    unit = tmp_path / "home" / ".config" / "systemd" / "user" / UNIT_NAME
    lines = result.stdout.splitlines()
    assert lines[0] == f"would write {unit}:"
    assert f"ExecStart={sys.executable} -m dream_window run --config {config}" in lines
    assert lines[-4:] == [
        "would run:",
        "  systemctl --user daemon-reload",
        f"  systemctl --user enable {UNIT_NAME}",
        f"  systemctl --user restart {UNIT_NAME}",
    ]
    assert runner.calls == []
    assert not unit.exists()


def test_enable_then_status_then_disable(dream_home: Path, tmp_path: Path) -> None:
    user_config(dream_home)
    host = linux(tmp_path / "home")
    runner = FakeRunner()
    result = invoke(host, runner, "enable")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("autostart enabled (")
    unit = tmp_path / "home" / ".config" / "systemd" / "user" / UNIT_NAME
    assert unit.is_file()

    runner.answers = {
        ("systemctl", "--user", "is-enabled", UNIT_NAME): CommandResult(0, "enabled"),
        ("systemctl", "--user", "is-active", UNIT_NAME): CommandResult(0, "active"),
    }
    result = invoke(host, runner, "status")
    assert (result.exit_code, result.stdout) == (0, f"autostart enabled: {UNIT_NAME}: enabled, active\n")

    result = invoke(host, runner, "disable")
    assert (result.exit_code, result.stdout) == (0, "autostart disabled\n")
    assert not unit.exists()
    result = invoke(host, runner, "status")
    assert result.exit_code == 1
    assert result.stdout == f"autostart not enabled: no {unit}\n"


def test_windows_dry_run_shows_the_task_xml_and_schtasks(dream_home: Path, tmp_path: Path) -> None:
    user_config(dream_home)
    scripts = tmp_path / "Scripts"
    scripts.mkdir()
    (scripts / "python.exe").write_bytes(b"")
    (scripts / "pythonw.exe").write_bytes(b"")
    host = Host("win32", tmp_path, {"USERNAME": "ann", "USERDOMAIN": "PC"}, scripts / "python.exe")
    runner = FakeRunner()
    result = invoke(host, runner, "enable", "--dry-run")
    assert result.exit_code == 0, result.output
    xml = dream_home / "autostart" / f"{TASK_NAME}.xml"
    assert result.stdout.startswith(f'would write {xml}:\n<?xml version="1.0" encoding="UTF-16"?>\n')
    assert f"<Command>{scripts / 'pythonw.exe'}</Command>" in result.stdout
    assert result.stdout.endswith(
        f"would run:\n  schtasks /Create /TN {TASK_NAME} /XML {xml} /F\n  schtasks /Run /TN {TASK_NAME}\n"
    )
    assert runner.calls == [] and not xml.exists()


def test_enable_with_an_explicit_config_runs_that_one(tmp_path: Path) -> None:
    config = tmp_path / "my config.yaml"
    config.write_text("generation:\n  mode: img2img\n", encoding="utf-8")
    result = invoke(linux(tmp_path / "home"), FakeRunner(), "enable", "--dry-run", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert f'--config "{config}"' in result.stdout


def test_enable_without_a_config_says_to_run_init(tmp_path: Path, dream_home: Path) -> None:
    result = invoke(linux(tmp_path / "home"), FakeRunner(), "enable")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: no config at {dream_home / 'config.yaml'} yet: write it with `dream-window init` "
        "(or give --config FILE)\n"
    )


def test_enable_refuses_a_bad_config_now_rather_than_at_the_next_logon(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("generation:\n  denoise: 1.7\n", encoding="utf-8")
    runner = FakeRunner()
    result = invoke(linux(tmp_path / "home"), runner, "enable", "--config", str(config))
    assert result.exit_code == 2
    assert result.stderr == "config error: generation.denoise must be between 0 and 1, got 1.7\n"
    assert runner.calls == []


def test_a_missing_tool_or_a_refusal_is_one_line_and_exit_1(dream_home: Path, tmp_path: Path) -> None:
    user_config(dream_home)
    result = invoke(linux(tmp_path / "home"), FakeRunner(missing=["systemctl"]), "enable")
    assert result.exit_code == 1
    assert result.stderr == "error: systemctl not found: is it installed and on PATH?\n"

    refusing = FakeRunner(
        {("systemctl", "--user", "daemon-reload"): CommandResult(1, "Failed to connect to bus")}
    )
    result = invoke(linux(tmp_path / "home"), refusing, "enable")
    assert result.exit_code == 1
    assert (
        result.stderr == "error: `systemctl --user daemon-reload` failed (exit 1): Failed to connect to bus\n"
    )


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    host = linux(tmp_path / "home")
    assert invoke(host, FakeRunner(), "frobnicate").exit_code == 2
    assert invoke(host, FakeRunner(), "enable", "--config", str(tmp_path / "missing.yaml")).exit_code == 2
    assert invoke(host, FakeRunner(), "status", "--config", "x.yaml").exit_code == 2  # enable's option only
