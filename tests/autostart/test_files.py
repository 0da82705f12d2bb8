"""Each file autostart writes is checked by something that knows the format: systemd-analyze for
the unit, plistlib for the LaunchAgent, our subset of Microsoft's schema for the task XML. Each
checker is also shown a broken file, so a checker that accepts anything fails here."""

from __future__ import annotations

import io
import os
import plistlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from dream_window.autostart import AGENT_LABEL, TASK_NS, UNIT_NAME, Host, plan_for, service_argv
from dream_window.user_dirs import UserDirs

HERE = Path(__file__).parent
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


# --- systemd ----------------------------------------------------------------------------------


def verify_unit(unit_text: str, tmp_path: Path) -> tuple[bool, str]:
    """``systemd-analyze verify --user`` on the unit: ok means exit 0 and nothing said (systemd
    only warns, exit 0, about an unknown key or a bad value)."""
    assert SYSTEMD_ANALYZE is not None
    folder = tmp_path / "units"
    folder.mkdir(exist_ok=True)
    path = folder / UNIT_NAME  # verify wants a real unit name
    path.write_text(unit_text, encoding="utf-8")
    runtime = tmp_path / "xdg-runtime"  # the user manager it simulates needs one, owned, 0700
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    r = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--user", str(path)], capture_output=True, text=True, env=env, timeout=60
    )
    said = (r.stdout + r.stderr).strip()
    return r.returncode == 0 and not said, said


@needs_systemd
def test_the_unit_passes_systemd_analyze_verify(
    linux_host: Host, config: Path, dirs: UserDirs, tmp_path: Path
) -> None:
    plan = plan_for(linux_host, config, dirs)
    ok, said = verify_unit(plan.file_text(), tmp_path)
    assert ok, said
    text = plan.file_text()
    assert f"ExecStart={sys.executable} -m dream_window run --config {config}\n" in text
    assert "WantedBy=graphical-session.target\n" in text
    assert "PartOf=graphical-session.target\n" in text
    assert "RestartPreventExitStatus=2\n" in text


@needs_systemd
def test_a_path_with_spaces_percent_and_dollar_survives_systemd_quoting(
    linux_host: Host, dirs: UserDirs, tmp_path: Path
) -> None:
    # verify checks that ExecStart's first word is an executable: only right quoting finds it.
    odd = tmp_path / "my env 100% $HOME"
    odd.mkdir()
    python = odd / "python"
    python.symlink_to(sys.executable)
    config = odd / "config.yaml"
    config.write_text("{}\n", encoding="utf-8")
    host = Host(platform="linux", home=linux_host.home, env={}, python=python, uid=1000)
    text = plan_for(host, config, dirs).file_text()
    ok, said = verify_unit(text, tmp_path)
    assert ok, said
    # % is a specifier everywhere; $ a variable in the arguments only.
    command = '"' + str(python).replace("%", "%%") + '"'
    argument = '"' + str(config).replace("%", "%%").replace("$", "$$") + '"'
    assert f"ExecStart={command} -m dream_window run --config {argument}\n" in text

    # The same unit, naively unquoted: systemd splits the path at the space and finds nothing.
    naive = text.replace(command, str(python).replace("%", "%%"))
    assert not verify_unit(naive, tmp_path)[0]


@needs_systemd
@pytest.mark.parametrize(
    ("what", "old", "new"),
    [
        ("a missing interpreter", sys.executable, "/nonexistent/bin/python"),
        ("a bad restart value", "Restart=on-failure", "Restart=sometimes"),
        ("an unknown key", "Nice=10", "Nicety=10"),
        ("a key in the wrong section", "WantedBy=graphical-session.target", "ExecStop=/bin/true"),
    ],
)
def test_systemd_analyze_rejects_a_broken_unit(
    what: str, old: str, new: str, linux_host: Host, config: Path, dirs: UserDirs, tmp_path: Path
) -> None:
    text = plan_for(linux_host, config, dirs).file_text()
    assert old in text
    ok, said = verify_unit(text.replace(old, new), tmp_path)
    assert not ok, f"{what} was accepted"
    assert said


# --- launchd ----------------------------------------------------------------------------------


def test_the_launch_agent_round_trips_through_plistlib(mac_host: Host, config: Path, dirs: UserDirs) -> None:
    plan = plan_for(mac_host, config, dirs)
    assert plan.file == mac_host.home / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist"
    assert plan.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist')
    agent = plistlib.loads(plan.content, fmt=plistlib.FMT_XML)
    assert plistlib.loads(plistlib.dumps(agent, fmt=plistlib.FMT_XML)) == agent
    assert agent["Label"] == AGENT_LABEL
    assert agent["ProgramArguments"] == service_argv(mac_host.python, config)
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["LimitLoadToSessionType"] == "Aqua"
    assert agent["StandardErrorPath"] == str(dirs.logs / "launchd.log")
    # launchd's types: every key we use has the type launchd.plist(5) gives it.
    types = {
        "Label": str,
        "ProgramArguments": list,
        "RunAtLoad": bool,
        "KeepAlive": dict,
        "ThrottleInterval": int,
        "LimitLoadToSessionType": str,
        "Nice": int,
        "WorkingDirectory": str,
        "StandardOutPath": str,
        "StandardErrorPath": str,
    }
    assert {k: type(v) for k, v in agent.items()} == types


def test_plistlib_rejects_a_broken_plist(mac_host: Host, config: Path, dirs: UserDirs) -> None:
    content = plan_for(mac_host, config, dirs).content
    with pytest.raises(ValueError, match="unexpected key"):
        plistlib.loads(content.replace(b"<true/>", b"<yes/>"), fmt=plistlib.FMT_XML)


# --- Task Scheduler ---------------------------------------------------------------------------

SCHEMA = xmlschema.XMLSchema(HERE / "task_scheduler_subset.xsd")


def test_the_task_xml_is_utf16_le_with_a_bom_and_says_so(
    windows_host: Host, config: Path, dirs: UserDirs
) -> None:
    content = plan_for(windows_host, config, dirs).content
    assert content[:2] == b"\xff\xfe"  # schtasks takes UTF-16 LE (or ANSI), not UTF-8
    text = content[2:].decode("utf-16-le")
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>\n')
    ET.fromstring(content)  # expat reads the BOM and the declaration as one


def test_the_task_xml_is_valid_against_the_task_scheduler_schema(
    windows_host: Host, config: Path, dirs: UserDirs
) -> None:
    plan = plan_for(windows_host, config, dirs)
    SCHEMA.validate(io.BytesIO(plan.content))
    ns = {"t": TASK_NS}
    task = ET.fromstring(plan.content)
    assert task.findtext("t:Triggers/t:LogonTrigger/t:UserId", namespaces=ns) == "DESKTOP-1\\ann"
    assert task.findtext("t:Principals/t:Principal/t:UserId", namespaces=ns) == "DESKTOP-1\\ann"
    assert task.findtext("t:Principals/t:Principal/t:LogonType", namespaces=ns) == "InteractiveToken"
    assert task.findtext("t:Settings/t:ExecutionTimeLimit", namespaces=ns) == "PT0S"
    assert task.findtext("t:Settings/t:DisallowStartIfOnBatteries", namespaces=ns) == "false"
    command = task.findtext("t:Actions/t:Exec/t:Command", namespaces=ns)
    assert command == str(windows_host.python.with_name("pythonw.exe"))  # no console window
    assert (
        task.findtext("t:Actions/t:Exec/t:Arguments", namespaces=ns)
        == f"-m dream_window run --config {config}"
    )


def test_a_config_path_with_spaces_is_quoted_for_the_windows_command_line(
    windows_host: Host, dirs: UserDirs, tmp_path: Path
) -> None:
    config = tmp_path / "My Documents" / "config.yaml"
    task = ET.fromstring(plan_for(windows_host, config, dirs).content)
    arguments = task.findtext(f"{{{TASK_NS}}}Actions/{{{TASK_NS}}}Exec/{{{TASK_NS}}}Arguments")
    assert arguments == f'-m dream_window run --config "{config}"'


def _broken(content: bytes, change: str) -> bytes:
    ns = {"t": TASK_NS}
    task = ET.fromstring(content)
    if change == "trigger order":  # a trigger is a sequence: UserId after Enabled, not before
        logon = task.find("t:Triggers/t:LogonTrigger", ns)
        assert logon is not None
        enabled = logon.find("t:Enabled", ns)
        assert enabled is not None
        logon.remove(enabled)
        logon.append(enabled)
    elif change == "priority 11":
        priority = task.find("t:Settings/t:Priority", ns)
        assert priority is not None
        priority.text = "11"
    elif change == "no actions":
        actions = task.find("t:Actions", ns)
        assert actions is not None
        task.remove(actions)
    elif change == "unknown principal":
        actions = task.find("t:Actions", ns)
        assert actions is not None
        actions.set("Context", "Somebody")
    elif change == "restart every 30 s":
        interval = task.find("t:Settings/t:RestartOnFailure/t:Interval", ns)
        assert interval is not None
        interval.text = "PT30S"
    elif change == "unknown element":
        ET.SubElement(task.find("t:Settings", ns), f"{{{TASK_NS}}}RunForever").text = "true"  # type: ignore[arg-type]
    return ET.tostring(task, encoding="utf-8")  # ns0: prefixes: the same names to a validator


@pytest.mark.parametrize(
    "change",
    [
        "trigger order",
        "priority 11",
        "no actions",
        "unknown principal",
        "restart every 30 s",
        "unknown element",
    ],
)
def test_the_schema_rejects_a_wrong_task_xml(
    change: str, windows_host: Host, config: Path, dirs: UserDirs
) -> None:
    content = plan_for(windows_host, config, dirs).content
    SCHEMA.validate(_broken(content, "none"))  # the round trip alone keeps it valid
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        SCHEMA.validate(_broken(content, change))
