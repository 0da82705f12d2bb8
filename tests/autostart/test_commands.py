"""What enable, disable and status run on each platform (argv recorded by a fake runner, never
the real schtasks/systemctl/launchctl), what they leave on disk, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dream_window.autostart import (
    AGENT_LABEL,
    TASK_NAME,
    UNIT_NAME,
    CommandResult,
    Host,
    disable,
    enable,
    plan_for,
    run_command,
    status,
)
from dream_window.errors import AutostartError
from dream_window.user_dirs import UserDirs
from tests.autostart.conftest import FakeRunner

SYSTEMCTL = ("systemctl", "--user")


def test_linux_enable_writes_the_unit_then_reloads_enables_and_restarts(
    linux_host: Host, config: Path, dirs: UserDirs, runner: FakeRunner
) -> None:
    plan = plan_for(linux_host, config, dirs)
    assert plan.file == linux_host.home / ".config" / "systemd" / "user" / UNIT_NAME
    enable(plan, runner)
    assert plan.file.read_bytes() == plan.content
    assert runner.calls == [
        (*SYSTEMCTL, "daemon-reload"),
        (*SYSTEMCTL, "enable", UNIT_NAME),
        (*SYSTEMCTL, "restart", UNIT_NAME),
    ]


def test_linux_unit_goes_under_xdg_config_home_when_set(
    linux_host: Host, config: Path, dirs: UserDirs, tmp_path: Path
) -> None:
    host = Host("linux", linux_host.home, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, linux_host.python, 1000)
    assert plan_for(host, config, dirs).file == tmp_path / "xdg" / "systemd" / "user" / UNIT_NAME
    relative = Host("linux", linux_host.home, {"XDG_CONFIG_HOME": "xdg"}, linux_host.python, 1000)
    assert plan_for(relative, config, dirs).file.is_relative_to(linux_host.home / ".config")  # spec: ignored


def test_linux_disable_stops_removes_and_reloads(
    linux_host: Host, config: Path, dirs: UserDirs, runner: FakeRunner
) -> None:
    plan = plan_for(linux_host, config, dirs)
    enable(plan, runner)
    runner.calls.clear()
    assert disable(plan, runner) is True
    assert not plan.file.exists()
    assert runner.calls == [(*SYSTEMCTL, "disable", "--now", UNIT_NAME), (*SYSTEMCTL, "daemon-reload")]

    runner.calls.clear()
    assert disable(plan, runner) is False  # nothing there: nothing run
    assert runner.calls == []


def test_linux_status_reads_is_enabled_and_is_active(
    linux_host: Host, config: Path, dirs: UserDirs, runner: FakeRunner
) -> None:
    plan = plan_for(linux_host, config, dirs)
    assert status(plan, runner).enabled is False  # no unit file: not asked
    assert runner.calls == []

    enable(plan, runner)
    runner.answers = {
        (*SYSTEMCTL, "is-enabled", UNIT_NAME): CommandResult(0, "enabled"),
        (*SYSTEMCTL, "is-active", UNIT_NAME): CommandResult(3, "inactive"),
    }
    found = status(plan, runner)
    assert (found.enabled, found.detail) == (True, f"{UNIT_NAME}: enabled, inactive")

    runner.answers[(*SYSTEMCTL, "is-enabled", UNIT_NAME)] = CommandResult(1, "disabled")
    assert status(plan, runner).enabled is False


def test_linux_status_says_when_systemctl_cannot_reach_the_user_manager(
    linux_host: Host, config: Path, dirs: UserDirs, runner: FakeRunner
) -> None:
    plan = plan_for(linux_host, config, dirs)
    enable(plan, runner)
    runner.answers = {
        (*SYSTEMCTL, "is-enabled", UNIT_NAME): CommandResult(0, "enabled"),
        (*SYSTEMCTL, "is-active", UNIT_NAME): CommandResult(1, "Failed to connect to bus: No medium found"),
    }
    with pytest.raises(AutostartError) as err:
        status(plan, runner)
    assert str(err.value) == (
        f"`systemctl --user is-active {UNIT_NAME}` failed: Failed to connect to bus: No medium found"
    )


def test_macos_enable_replaces_a_loaded_agent_and_bootstraps_it(
    mac_host: Host, config: Path, dirs: UserDirs
) -> None:
    plan = plan_for(mac_host, config, dirs)
    service = f"gui/501/{AGENT_LABEL}"
    # Nothing loaded yet: bootout fails (launchctl's "No such process"), and that is fine.
    runner = FakeRunner(
        {("launchctl", "bootout", service): CommandResult(3, "Boot-out failed: 3: No such process")}
    )
    enable(plan, runner)
    assert runner.calls == [
        ("launchctl", "bootout", service),
        ("launchctl", "bootstrap", "gui/501", str(plan.file)),
    ]
    assert plan.file.read_bytes() == plan.content
    assert dirs.logs.is_dir()  # launchd opens StandardErrorPath there but does not make folders

    runner.answers[("launchctl", "print", service)] = CommandResult(
        0, f"{service} = {{\n\tstate = running\n}}"
    )
    assert status(plan, runner).detail == f"{AGENT_LABEL}: loaded, running"

    runner.calls.clear()
    assert disable(plan, runner) is True
    assert runner.calls == [("launchctl", "bootout", service)]
    assert not plan.file.exists()


def test_macos_bootstrap_failing_is_one_line(mac_host: Host, config: Path, dirs: UserDirs) -> None:
    plan = plan_for(mac_host, config, dirs)
    runner = FakeRunner(
        {
            ("launchctl", "bootstrap", "gui/501", str(plan.file)): CommandResult(
                5, "Bootstrap failed: 5: Input/output error\nTry re-running"
            )
        }
    )
    with pytest.raises(AutostartError) as err:
        enable(plan, runner)
    assert str(err.value) == (
        f"`launchctl bootstrap gui/501 {plan.file}` failed (exit 5): Bootstrap failed: 5: Input/output error"
    )


def test_windows_enable_registers_the_xml_and_starts_the_task(
    windows_host: Host, config: Path, dirs: UserDirs, runner: FakeRunner
) -> None:
    plan = plan_for(windows_host, config, dirs)
    assert plan.file == dirs.data / "autostart" / f"{TASK_NAME}.xml"
    enable(plan, runner)
    assert plan.file.read_bytes()[:2] == b"\xff\xfe"
    assert runner.calls == [
        ("schtasks", "/Create", "/TN", TASK_NAME, "/XML", str(plan.file), "/F"),
        ("schtasks", "/Run", "/TN", TASK_NAME),
    ]


def test_windows_status_and_disable_ask_task_scheduler(
    windows_host: Host, config: Path, dirs: UserDirs
) -> None:
    plan = plan_for(windows_host, config, dirs)
    query = ("schtasks", "/Query", "/TN", TASK_NAME)
    runner = FakeRunner({query: CommandResult(1, "ERROR: The system cannot find the file specified.")})
    assert status(plan, runner).enabled is False
    assert disable(plan, runner) is False  # not registered, no file: nothing deleted
    assert runner.calls == [query, query]

    table = "Folder: \\\nTaskName      Next Run Time   Status\n============ =============== ======\nDreamWindow   N/A             Running"
    runner = FakeRunner({query: CommandResult(0, table)})
    found = status(plan, runner)
    assert (found.enabled, found.detail) == (True, "task DreamWindow: DreamWindow   N/A             Running")
    assert disable(plan, runner) is True
    assert runner.calls[-1] == ("schtasks", "/Delete", "/TN", TASK_NAME, "/F")


def test_windows_refusal_is_one_line_naming_the_command(
    windows_host: Host, config: Path, dirs: UserDirs
) -> None:
    plan = plan_for(windows_host, config, dirs)
    create = ("schtasks", "/Create", "/TN", TASK_NAME, "/XML", str(plan.file), "/F")
    runner = FakeRunner({create: CommandResult(1, "ERROR: Access is denied.")})
    with pytest.raises(AutostartError) as err:
        enable(plan, runner)
    assert str(err.value) == (
        f"`schtasks /Create /TN DreamWindow /XML {plan.file} /F` failed (exit 1): ERROR: Access is denied."
    )
    assert runner.calls == [create]  # nothing run after the failure


def test_windows_falls_back_to_python_exe_with_a_note_when_there_is_no_pythonw(
    windows_host: Host, config: Path, dirs: UserDirs
) -> None:
    windows_host.python.with_name("pythonw.exe").unlink()
    plan = plan_for(windows_host, config, dirs)
    assert f"<Command>{windows_host.python}</Command>" in plan.file_text()
    assert plan.notes == (
        f"no pythonw.exe beside {windows_host.python}: the dream will run in a console window",
    )


def test_windows_needs_to_know_the_user(windows_host: Host, config: Path, dirs: UserDirs) -> None:
    host = Host("win32", windows_host.home, {}, windows_host.python)
    with pytest.raises(AutostartError, match="USERNAME is not set"):
        plan_for(host, config, dirs)
    without_domain = Host("win32", windows_host.home, {"USERNAME": "ann"}, windows_host.python)
    assert "<UserId>ann</UserId>" in plan_for(without_domain, config, dirs).file_text()


def test_the_real_runner_turns_a_missing_tool_into_one_line() -> None:
    with pytest.raises(AutostartError) as err:
        run_command(["dream-window-no-such-tool-here", "--help"])
    assert str(err.value) == "dream-window-no-such-tool-here not found: is it installed and on PATH?"


def test_the_real_runner_captures_exit_code_and_output(tmp_path: Path) -> None:
    import sys

    result = run_command([sys.executable, "-c", "import sys; print('out'); sys.exit('err')"])
    assert result.returncode == 1
    assert result.output.split() == ["out", "err"]
