"""Monitor fixtures: a real Xvfb server, real processes with game-like names, hand-written fakes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from dream_window.monitor.detector import CheckContext, Reading
from tests.conftest import SLACK


@dataclass
class XServer:
    display: str
    proc: subprocess.Popen[bytes]


def start_xvfb() -> XServer:
    """Start a real X server. Xvfb picks a free display number and tells us (-displayfd)."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    # -noreset: the server must not reset (dropping new connections) each time the last client leaves.
    # -s 0: no idle screen saver. The server lives for the whole session, and after Xvfb's default
    # 10 idle minutes its own screen saver blanks the screen: a clean-clone run that drew the
    # screen-saver test late saw "the X screen saver blanked the screen" before the test forced it.
    proc = subprocess.Popen(
        [
            exe,
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            "1280x720x24",
            "-nolisten",
            "tcp",
            "-noreset",
            "-s",
            "0",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        number = f.readline().strip().decode()
    if not number:
        stop_xvfb(XServer("", proc))
        pytest.skip("Xvfb did not start")
    return XServer(f":{number}", proc)


def stop_xvfb(server: XServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(5)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def xvfb() -> Iterator[XServer]:
    server = start_xvfb()
    try:
        yield server
    finally:
        stop_xvfb(server)


def start_named_process(directory: Path, name: str) -> subprocess.Popen[bytes]:
    """Run a copy of ``sleep`` under ``name`` (a real process whose psutil name() is ``name``)."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / name
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "60"])
    deadline = time.monotonic() + 5 * SLACK
    while time.monotonic() < deadline:  # exec has happened once the kernel reports the new name
        try:
            if psutil.Process(proc.pid).name() == name[:15] or psutil.Process(proc.pid).name() == name:
                return proc
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    proc.kill()
    raise RuntimeError(f"could not start a process named {name}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def game_process(tmp_path: Path) -> Iterator[Any]:
    """Start processes with game-like names; all are stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, directory: Path | None = None) -> subprocess.Popen[bytes]:
        p = start_named_process(directory or tmp_path / "bin", name)
        procs.append(p)
        return p

    yield start
    for p in procs:
        stop_process(p)


class ScriptedDetector:
    """A detector that answers what the test sets, and counts how often it was asked."""

    def __init__(self, name: str, reading: Reading | None = None) -> None:
        self.name = name
        self.reading = reading or Reading.clear("nothing")
        self.calls: list[CheckContext] = []
        self.closed = False

    def check(self, ctx: CheckContext) -> Reading:
        self.calls.append(ctx)
        if isinstance(self.reading, Exception):
            raise self.reading
        return self.reading

    def describe(self) -> str:
        return "scripted"

    def close(self) -> None:
        self.closed = True


class FakeGpuReader:
    """NVML as the GPU detector sees it, scripted by the test."""

    def __init__(self, *, per_process: bool = True, compute_pids: set[int] | None = None) -> None:
        self.util = 0.0
        self.procs: dict[int, float] | None = {} if per_process else None
        self.on_device = compute_pids
        self.fail: Exception | None = None
        self.closed = False

    def device_count(self) -> int:
        return 1

    def device_name(self, index: int) -> str:
        return "Fake RTX"

    def utilization(self, index: int) -> float:
        if self.fail is not None:
            raise self.fail
        return self.util

    def process_utilization(self, index: int) -> dict[int, float] | None:
        return None if self.procs is None else dict(self.procs)

    def compute_pids(self, index: int) -> set[int] | None:
        return self.on_device

    def close(self) -> None:
        self.closed = True


PYTHON = sys.executable


# --- D-Bus: a private bus daemon and services answered from a thread (jeepney) -------------------

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@dataclass
class PrivateBus:
    address: str
    proc: subprocess.Popen[bytes]
    directory: Path

    def stop(self) -> None:
        stop_process(self.proc)


def start_dbus_daemon(directory: Path) -> PrivateBus:
    """A real dbus-daemon of our own: no service activation, anyone may own any name."""
    exe = shutil.which("dbus-daemon")
    if exe is None:
        pytest.skip("dbus-daemon is not installed (Debian: apt-get install dbus-daemon)")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "bus.conf"
    config.write_text(_BUS_CONFIG.format(dir=directory), encoding="utf-8")
    proc = subprocess.Popen(
        [exe, f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().decode().strip()  # printed once it listens
    if not address:
        stop_process(proc)
        pytest.skip("dbus-daemon did not start")
    return PrivateBus(address, proc, directory)


def _short_dir() -> Path:
    # unix socket paths are limited to ~108 bytes; pytest's tmp_path can be longer than that
    import tempfile

    return Path(tempfile.mkdtemp(prefix="dwbus", dir="/tmp"))


@pytest.fixture
def private_bus() -> Iterator[PrivateBus]:
    bus = start_dbus_daemon(_short_dir())
    try:
        yield bus
    finally:
        bus.stop()
        shutil.rmtree(bus.directory, ignore_errors=True)


Reply = tuple[str, tuple[Any, ...]]  # (signature, body) of a method return


class DbusError(Exception):
    """Raised by a handler: sent back as a D-Bus error reply."""

    def __init__(self, name: str, text: str = "") -> None:
        super().__init__(name)
        self.name, self.text = name, text


class DbusService:
    """Owns bus names on a real bus and answers method calls from a thread.

    ``handler(path, interface, member, body)`` returns (signature, body) or raises DbusError.
    """

    def __init__(self, address: str, names: tuple[str, ...], handler: Any) -> None:
        import threading

        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        self.handler = handler
        self.calls: list[tuple[str, str, str]] = []
        self.conn = open_dbus_connection(address)
        for name in names:
            reply = self.conn.send_and_get_reply(
                message_bus.RequestName(name, 4), timeout=5
            )  # 4: DO_NOT_QUEUE
            assert reply.body == (1,), f"could not own {name}: {reply.body}"  # 1: PRIMARY_OWNER
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dbus-service", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        from jeepney import HeaderFields, MessageType, new_error, new_method_return

        while not self._stop.is_set():
            try:
                msg = self.conn.receive(timeout=0.05)
            except TimeoutError:
                continue
            except OSError:
                return
            if msg.header.message_type is not MessageType.method_call:
                continue
            f = msg.header.fields
            path, iface, member = (
                f[HeaderFields.path],
                f.get(HeaderFields.interface, ""),
                f[HeaderFields.member],
            )
            self.calls.append((path, iface, member))
            try:
                signature, body = self.handler(path, iface, member, msg.body)
                out = new_method_return(msg, signature, body)
            except DbusError as exc:
                out = new_error(msg, exc.name, "s", (exc.text,)) if exc.text else new_error(msg, exc.name)
            self.conn.send(out)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.conn.close()


PROPS = "org.freedesktop.DBus.Properties"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"


class FakeLogind:
    """What logind answers about sessions and users: Manager.GetSession/GetSessionByPID/GetUser,
    Session.LockedHint and User.Display, as ``org.freedesktop.login1`` on a private bus."""

    def __init__(self) -> None:
        self.locked: dict[str, bool] = {}  # session path -> LockedHint
        self.ids: dict[str, str] = {}  # session id -> path
        self.pids: dict[int, str] = {}  # pid -> session path
        self.displays: dict[int, tuple[str, str]] = {}  # uid -> (session id, path); ("", "/") = none

    def add_session(self, sid: str, *, pid: int | None = None, uid: int | None = None) -> str:
        path = f"/org/freedesktop/login1/session/_3{sid}"
        self.locked[path], self.ids[sid] = False, path
        if pid is not None:
            self.pids[pid] = path
        if uid is not None:
            self.displays[uid] = (sid, path)
        return path

    def __call__(self, path: str, iface: str, member: str, body: tuple[Any, ...]) -> Reply:
        if path == "/org/freedesktop/login1" and iface == "org.freedesktop.login1.Manager":
            if member == "GetSession":
                if body[0] not in self.ids:
                    raise DbusError("org.freedesktop.login1.NoSuchSession", f"No session '{body[0]}' known")
                return "o", (self.ids[body[0]],)
            if member == "GetSessionByPID":
                if body[0] not in self.pids:
                    raise DbusError(
                        "org.freedesktop.login1.NoSessionForPID", f"PID {body[0]} not in a session"
                    )
                return "o", (self.pids[body[0]],)
            if member == "GetUser":
                return "o", (f"/org/freedesktop/login1/user/_{body[0]}",)
        if iface == PROPS and member == "Get":
            interface, prop = body
            if path in self.locked and interface == "org.freedesktop.login1.Session":
                if prop != "LockedHint":
                    raise DbusError("org.freedesktop.DBus.Error.UnknownProperty", prop)
                return "v", (("b", self.locked[path]),)
            if path.startswith("/org/freedesktop/login1/user/_") and prop == "Display":
                uid = int(path.rsplit("_", 1)[1])
                return "v", (("(so)", self.displays.get(uid, ("", "/"))),)
            raise DbusError(UNKNOWN_OBJECT, f"no object {path}")
        raise DbusError(UNKNOWN_METHOD, f"{iface}.{member}")


class FakeScreenSaver:
    """A screensaver's ``GetActive()`` at one object path and interface."""

    def __init__(
        self, path: str = "/org/freedesktop/ScreenSaver", iface: str = "org.freedesktop.ScreenSaver"
    ) -> None:
        self.path, self.iface = path, iface
        self.active = False

    def __call__(self, path: str, iface: str, member: str, body: tuple[Any, ...]) -> Reply:
        if path == self.path and iface == self.iface and member == "GetActive":
            return "b", (self.active,)
        raise DbusError(UNKNOWN_METHOD, f"{path} {iface}.{member}")


@pytest.fixture
def dbus_service() -> Iterator[Any]:
    """Start DbusServices on a bus; all are closed after the test."""
    services: list[DbusService] = []

    def start(address: str, names: tuple[str, ...], handler: Any) -> DbusService:
        s = DbusService(address, names, handler)
        services.append(s)
        return s

    yield start
    for s in services:
        s.close()
