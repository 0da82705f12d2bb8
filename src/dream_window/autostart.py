"""Start the dream when the user logs on: a Task Scheduler task (Windows), a systemd user unit
(Linux), a LaunchAgent (macOS).

Each is one file plus a few commands of the OS's own tool, described first as an
:class:`AutostartPlan` (pure data: what file, what bytes, which argv) and then carried out with an
injected :class:`Runner`, so ``--dry-run`` prints exactly what would happen and tests record the
argv without running schtasks, systemctl or launchctl. What the service runs is the same
everywhere: ``<python> -m dream_window run --config <the user's config>``, with the interpreter
that runs this command (a pipx or uv tool venv keeps its path across upgrades).

Windows
    A task at logon of the current user, run only while they are logged on (``InteractiveToken``,
    no stored password, no elevation: a logon trigger scoped to one user is what a standard user
    may register), as ``pythonw.exe`` (no console window) at below-normal priority, with no
    72-hour time limit (Task Scheduler's default), not held back on battery (Task Scheduler's
    default would never start it on a laptop unplugged at logon; ``game_detection.pause_on_battery``
    decides, as on Linux and macOS), restarted up to 3 times a minute apart when it fails. The XML is
    UTF-16 LE with a BOM, as Task Scheduler writes it: ``schtasks /Create /XML`` refuses UTF-8.
    It is kept at ``<data>/autostart/DreamWindow.xml`` for reference and registered with
    ``schtasks /Create /TN DreamWindow /XML <file> /F`` (``/F`` replaces an older one), then
    started with ``schtasks /Run``. Disabling deletes the task; a dream already running keeps
    running until logoff.
Linux
    ``~/.config/systemd/user/dream-window.service`` (``$XDG_CONFIG_HOME`` when set), wanted by
    ``graphical-session.target``, not ``default.target``: the user manager reaches default.target
    at any login, ssh and text consoles included, and before the desktop has handed it DISPLAY /
    WAYLAND_DISPLAY, which the fullscreen and presence checks need; graphical-session.target is up
    exactly while a desktop session is (GNOME, KDE Plasma and others start it), and ``PartOf=``
    stops the dream when that session ends. Restarted 30 s after a crash, never after exit 2 (a
    config error does not fix itself); ``Nice=10``. ``daemon-reload``, ``enable``, ``restart``
    (restart, not ``--now``: a re-enable with another config must replace the running one).
macOS
    ``~/Library/LaunchAgents/dream-window.plist``: ``RunAtLoad``, restarted when it exits with an
    error (``KeepAlive.SuccessfulExit = false``, at most once a minute), only in the Aqua (GUI)
    session, stderr/stdout to ``<logs>/launchd.log``. ``launchctl bootout`` (of an older one; may
    fail when none is loaded) then ``launchctl bootstrap gui/<uid> <plist>``; disabling boots it
    out and removes the plist. launchd also loads every plist in that folder at the next login.

Errors are :class:`~dream_window.errors.AutostartError`, one line naming the command and what it
said.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Literal, Protocol

from dream_window.errors import AutostartError, FrameWriteError
from dream_window.file_ops import atomic_write_bytes
from dream_window.user_dirs import UserDirs

TASK_NAME = "DreamWindow"
UNIT_NAME = "dream-window.service"
AGENT_LABEL = "dream-window"
TASK_NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
WRITTEN_BY = "Written by `dream-window autostart enable`; `dream-window autostart disable` removes it."

Kind = Literal["windows", "linux", "macos"]


def platform_kind(platform: str) -> Kind:
    """Which autostart mechanism a ``sys.platform`` value gets."""
    if platform.startswith(("win32", "cygwin")):
        return "windows"
    if platform == "darwin":
        return "macos"
    return "linux"


# --- running commands -------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    output: str  # stdout and stderr, stripped


class Runner(Protocol):
    """Runs one command to its end. Raises AutostartError when it cannot be started at all."""

    def __call__(self, argv: Sequence[str]) -> CommandResult: ...


def run_command(argv: Sequence[str]) -> CommandResult:
    """The real :class:`Runner`: a subprocess, its output captured (decoded leniently: schtasks
    speaks the console's code page)."""
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, errors="replace", check=False, timeout=120
        )
    except FileNotFoundError as exc:
        raise AutostartError(
            f"{argv[0]} not found: is it installed and on PATH?", command=list(argv)
        ) from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AutostartError(f"cannot run {argv[0]}: {exc}", command=list(argv)) from exc
    return CommandResult(proc.returncode, (proc.stdout + proc.stderr).strip())


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    # A step that fails in the ordinary case (booting out an agent that is not loaded), and why.
    may_fail: bool = False
    why: str = ""


@dataclass(frozen=True)
class Host:
    """The machine the plan is for: its platform, the user's home and environment, the user id
    (launchd's GUI domain) and the interpreter the service runs with."""

    platform: str
    home: Path
    env: Mapping[str, str]
    python: Path
    uid: int | None = None

    @classmethod
    def current(cls) -> Host:
        getuid = getattr(os, "getuid", None)
        return cls(
            platform=sys.platform,
            home=Path.home(),
            env=dict(os.environ),
            python=Path(sys.executable),
            uid=getuid() if getuid else None,
        )


@dataclass(frozen=True)
class AutostartPlan:
    """Everything ``enable``/``disable``/``status`` do on one platform, as data."""

    kind: Kind
    file: Path  # what enable writes and disable removes
    content: bytes
    enable: tuple[Step, ...]
    disable: tuple[Step, ...]
    after_removal: tuple[Step, ...]  # run once the file is gone (systemd forgets the unit)
    query: tuple[Step, ...]  # what status runs; all read-only
    folders: tuple[Path, ...] = ()  # created by enable besides the file's own (launchd's log folder)
    notes: tuple[str, ...] = ()

    def show(self, argv: Sequence[str]) -> str:
        """``argv`` as the user would type it in this platform's shell."""
        return subprocess.list2cmdline(list(argv)) if self.kind == "windows" else shlex.join(argv)

    def file_text(self) -> str:
        """The file's content as text (the task XML is UTF-16)."""
        if self.kind == "windows":
            return self.content.decode("utf-16")
        return self.content.decode("utf-8")


def service_argv(python: Path | str, config: Path | str) -> list[str]:
    """The command the autostarted service runs."""
    return [str(python), "-m", "dream_window", "run", "--config", str(config)]


def plan_for(host: Host, config: Path, dirs: UserDirs) -> AutostartPlan:
    """The plan for ``host``: the service runs ``config`` (an absolute path) at logon."""
    kind = platform_kind(host.platform)
    if kind == "windows":
        return _windows_plan(host, config, dirs)
    if kind == "macos":
        return _macos_plan(host, config, dirs)
    return _linux_plan(host, config)


# --- Windows: Task Scheduler ------------------------------------------------------------------


def _windows_user(env: Mapping[str, str]) -> str:
    user = env.get("USERNAME", "").strip()
    if not user:
        raise AutostartError("cannot tell the current Windows user: USERNAME is not set")
    domain = env.get("USERDOMAIN", "").strip()
    return f"{domain}\\{user}" if domain else user


def _windowless(python: Path) -> tuple[Path, tuple[str, ...]]:
    """pythonw.exe beside python.exe (every venv has both): the same interpreter, no console."""
    if python.name.lower() != "python.exe":
        return python, ()
    pythonw = python.with_name("pythonw.exe")
    if pythonw.exists():
        return pythonw, ()
    return python, (f"no pythonw.exe beside {python}: the dream will run in a console window",)


def task_xml(*, user: str, python: str, config: str, working_dir: str) -> bytes:
    """The task definition (Task Scheduler schema 1.2), UTF-16 LE with a BOM."""

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, tag, attrs)
        if text is not None:
            el.text = text
        return el

    # Plain names under a default namespace declared on the root, as Task Scheduler writes it.
    task = ET.Element("Task", {"version": "1.2", "xmlns": TASK_NS})
    info = sub(task, "RegistrationInfo")
    sub(info, "Author", user)
    sub(info, "Description", "Dream Window: the dream starts when you log on. " + WRITTEN_BY)
    sub(info, "URI", f"\\{TASK_NAME}")
    logon = sub(sub(task, "Triggers"), "LogonTrigger")
    sub(logon, "Enabled", "true")
    sub(logon, "UserId", user)  # this user only: registering for any user's logon needs admin
    sub(logon, "Delay", "PT30S")  # let the desktop settle first
    principal = sub(sub(task, "Principals"), "Principal", id="Author")
    sub(principal, "UserId", user)
    sub(principal, "LogonType", "InteractiveToken")
    sub(principal, "RunLevel", "LeastPrivilege")
    settings = sub(task, "Settings")
    for tag, text in (
        ("MultipleInstancesPolicy", "IgnoreNew"),
        ("DisallowStartIfOnBatteries", "false"),
        ("StopIfGoingOnBatteries", "false"),
        ("AllowHardTerminate", "true"),
        ("StartWhenAvailable", "false"),
        ("RunOnlyIfNetworkAvailable", "false"),
        ("AllowStartOnDemand", "true"),
        ("Enabled", "true"),
        ("Hidden", "false"),
        ("RunOnlyIfIdle", "false"),
        ("WakeToRun", "false"),
        ("ExecutionTimeLimit", "PT0S"),  # no limit (the default stops a task after 72 hours)
        ("Priority", "7"),  # below normal
    ):
        sub(settings, tag, text)
    idle = sub(settings, "IdleSettings")
    sub(idle, "StopOnIdleEnd", "false")
    sub(idle, "RestartOnIdle", "false")
    restart = sub(settings, "RestartOnFailure")
    sub(restart, "Interval", "PT1M")
    sub(restart, "Count", "3")
    exec_ = sub(sub(task, "Actions", Context="Author"), "Exec")
    sub(exec_, "Command", python)
    sub(exec_, "Arguments", subprocess.list2cmdline(service_argv(python, config)[1:]))
    sub(exec_, "WorkingDirectory", working_dir)
    ET.indent(task)
    body = ET.tostring(task, encoding="unicode")
    text = f'<?xml version="1.0" encoding="UTF-16"?>\n{body}\n'
    return b"\xff\xfe" + text.encode("utf-16-le")


def _windows_plan(host: Host, config: Path, dirs: UserDirs) -> AutostartPlan:
    python, notes = _windowless(host.python)
    file = dirs.data / "autostart" / f"{TASK_NAME}.xml"
    content = task_xml(
        user=_windows_user(host.env),
        python=str(python),
        config=str(config),
        working_dir=str(PureWindowsPath(str(config)).parent),
    )
    return AutostartPlan(
        kind="windows",
        file=file,
        content=content,
        enable=(
            Step(("schtasks", "/Create", "/TN", TASK_NAME, "/XML", str(file), "/F")),
            Step(("schtasks", "/Run", "/TN", TASK_NAME)),
        ),
        disable=(Step(("schtasks", "/Delete", "/TN", TASK_NAME, "/F")),),
        after_removal=(),
        query=(Step(("schtasks", "/Query", "/TN", TASK_NAME), may_fail=True),),
        notes=notes,
    )


# --- Linux: a systemd user unit ---------------------------------------------------------------

# Characters an ExecStart word may hold unquoted.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_./:=+,@-]+")


def _systemd_word(word: str, *, command: bool = False) -> str:
    """One ExecStart word, as systemd.service(5) parses it: ``%`` starts a specifier everywhere and
    ``$`` a variable in the arguments (not in the command itself: systemd-analyze finds a doubled
    ``$`` there literally), each unless doubled; a word with anything else is double-quoted, with
    C escapes."""
    word = word.replace("%", "%%")
    if not command:
        word = word.replace("$", "$$")
    if _PLAIN_WORD.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_unit(*, python: str, config: str) -> str:
    command, *args = service_argv(python, config)
    exec_start = " ".join([_systemd_word(command, command=True), *(_systemd_word(a) for a in args)])
    return "\n".join(
        [
            f"# {WRITTEN_BY}",
            "[Unit]",
            "Description=Dream Window: an endless, slowly evolving AI picture on the desktop",
            "After=graphical-session.target",
            "PartOf=graphical-session.target",
            "",
            "[Service]",
            f"ExecStart={exec_start}",
            "Restart=on-failure",
            "RestartSec=30",
            # 2 is a config or usage error: restarting will not fix it.
            "RestartPreventExitStatus=2",
            "Nice=10",
            "",
            "[Install]",
            "WantedBy=graphical-session.target",
            "",
        ]
    )


def _linux_plan(host: Host, config: Path) -> AutostartPlan:
    xdg = host.env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else host.home / ".config"
    file = base / "systemd" / "user" / UNIT_NAME
    ctl = ("systemctl", "--user")
    return AutostartPlan(
        kind="linux",
        file=file,
        content=systemd_unit(python=str(host.python), config=str(config)).encode("utf-8"),
        enable=(
            Step((*ctl, "daemon-reload")),
            Step((*ctl, "enable", UNIT_NAME)),
            Step((*ctl, "restart", UNIT_NAME)),
        ),
        disable=(Step((*ctl, "disable", "--now", UNIT_NAME)),),
        after_removal=(Step((*ctl, "daemon-reload")),),
        query=(
            Step((*ctl, "is-enabled", UNIT_NAME), may_fail=True),
            Step((*ctl, "is-active", UNIT_NAME), may_fail=True),
        ),
    )


# --- macOS: a LaunchAgent ---------------------------------------------------------------------


def launch_agent(*, python: str, config: str, log_file: str) -> bytes:
    plist = {
        "Label": AGENT_LABEL,
        "ProgramArguments": service_argv(python, config),
        "RunAtLoad": True,
        # Restart after a crash, not after a clean stop; launchd waits ThrottleInterval between.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 60,
        "LimitLoadToSessionType": "Aqua",  # the GUI login session only, not ssh
        "Nice": 10,
        "WorkingDirectory": str(Path(config).parent),
        "StandardOutPath": log_file,
        "StandardErrorPath": log_file,
    }
    return plistlib.dumps(plist, fmt=plistlib.FMT_XML)


_NOT_LOADED = "fails harmlessly when it is not loaded"


def _macos_plan(host: Host, config: Path, dirs: UserDirs) -> AutostartPlan:
    if host.uid is None:
        raise AutostartError("cannot tell the current user id for launchctl's gui/<uid> domain")
    file = host.home / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist"
    domain = f"gui/{host.uid}"
    return AutostartPlan(
        kind="macos",
        file=file,
        content=launch_agent(
            python=str(host.python), config=str(config), log_file=str(dirs.logs / "launchd.log")
        ),
        enable=(
            Step(("launchctl", "bootout", f"{domain}/{AGENT_LABEL}"), may_fail=True, why=_NOT_LOADED),
            Step(("launchctl", "bootstrap", domain, str(file))),
        ),
        disable=(Step(("launchctl", "bootout", f"{domain}/{AGENT_LABEL}"), may_fail=True, why=_NOT_LOADED),),
        after_removal=(),
        query=(Step(("launchctl", "print", f"{domain}/{AGENT_LABEL}"), may_fail=True),),
        folders=(dirs.logs,),
    )


# --- carrying a plan out ----------------------------------------------------------------------


def _run(plan: AutostartPlan, steps: Sequence[Step], runner: Runner) -> list[CommandResult]:
    results = []
    for step in steps:
        result = runner(step.argv)
        if result.returncode != 0 and not step.may_fail:
            said = result.output.splitlines()[0] if result.output else "no output"
            raise AutostartError(
                f"`{plan.show(step.argv)}` failed (exit {result.returncode}): {said}",
                command=list(step.argv),
                output=result.output,
            )
        results.append(result)
    return results


def enable(plan: AutostartPlan, runner: Runner) -> None:
    """Write the file and register it; the dream starts now and at every logon."""
    try:
        for folder in plan.folders:
            folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(plan.file, plan.content)
    except (OSError, FrameWriteError) as exc:
        raise AutostartError(f"cannot write {plan.file}: {exc}") from exc
    _run(plan, plan.enable, runner)


@dataclass(frozen=True)
class AutostartStatus:
    enabled: bool
    detail: str  # what the OS said, in a few words


def status(plan: AutostartPlan, runner: Runner) -> AutostartStatus:
    """Whether the dream starts at logon, and what the OS says about it now."""
    if plan.kind == "windows":
        # The task lives in Task Scheduler; our copy of its XML is only for reference.
        (result,) = _run(plan, plan.query, runner)
        registered = result.returncode == 0
        # schtasks /Query: a header, then one row (name, next run, status) in the console's language.
        row = result.output.splitlines()[-1].strip() if registered and result.output else ""
        return AutostartStatus(registered, f"task {TASK_NAME}: " + (row or "not registered"))
    if not plan.file.exists():  # systemd and launchd read the file: no file, no autostart
        return AutostartStatus(False, f"no {plan.file}")
    results = _run(plan, plan.query, runner)
    if plan.kind == "linux":
        enabled, active = (
            _systemctl_state(plan, step, r) for step, r in zip(plan.query, results, strict=True)
        )
        return AutostartStatus(results[0].returncode == 0, f"{UNIT_NAME}: {enabled}, {active}")
    loaded = results[0].returncode == 0
    state = re.search(r"^\s*state = (.+)$", results[0].output, re.MULTILINE) if loaded else None
    now = f"loaded, {state.group(1).strip()}" if state else ("loaded" if loaded else "not loaded")
    # launchd loads every plist in ~/Library/LaunchAgents at login: the file is what enables it.
    return AutostartStatus(True, f"{AGENT_LABEL}: {now}")


def _systemctl_state(plan: AutostartPlan, step: Step, result: CommandResult) -> str:
    """``systemctl is-enabled/is-active`` print one word (``disabled``, ``inactive`` ...) and exit
    non-zero for most of them; anything else is systemctl failing (no user manager, no bus)."""
    word = result.output.strip()
    if re.fullmatch(r"[a-z-]+", word):
        return word
    said = result.output.splitlines()[0] if result.output else f"exit {result.returncode}"
    raise AutostartError(
        f"`{plan.show(step.argv)}` failed: {said}", command=list(step.argv), output=result.output
    )


def disable(plan: AutostartPlan, runner: Runner) -> bool:
    """Unregister and remove the file. False when it was not enabled (nothing done)."""
    if not plan.file.exists() and not status(plan, runner).enabled:
        return False
    _run(plan, plan.disable, runner)
    try:
        with contextlib.suppress(FileNotFoundError):
            plan.file.unlink()
    except OSError as exc:
        raise AutostartError(f"cannot remove {plan.file}: {exc.strerror or exc}") from exc
    _run(plan, plan.after_removal, runner)
    return True
