"""Session lock and screensaver on Linux, asked over D-Bus with jeepney (importing this needs jeepney).

* **Lock**: logind's ``LockedHint`` property on our session (``org.freedesktop.login1`` on the *system*
  bus). Our session is ``XDG_SESSION_ID``, else the one ``GetSessionByPID`` finds for our process,
  else (a systemd user service belongs to no session) the user's graphical session, the ``Display``
  property of ``GetUser(uid)``. Desktop lockers (GNOME, KDE, and lockers started by ``xss-lock``)
  keep ``LockedHint`` up to date; a locker that does not set it goes unseen here.
* **Screensaver**: ``GetActive()`` on the *session* bus, first of ``org.freedesktop.ScreenSaver``
  (``/org/freedesktop/ScreenSaver``, or ``/ScreenSaver`` as older KDE spells it), then the desktops'
  own interfaces (GNOME, Cinnamon, MATE). The first that answers is kept; when none does the part is
  unsupported, and asked again every ``retry_seconds`` (a desktop may start after us).

Calls block (at most ``timeout`` seconds each); the monitor runs every check in a worker thread,
never on the event loop. jeepney's errors stop in this module: a bus that cannot be reached becomes
``unavailable``, a service that is not there ``unsupported``, an answer that does not come ``unknown``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection

from dream_window.monitor.detector import CheckContext, Condition, Detector, Reading, StaticDetector
from dream_window.monitor.presence_names import LOCK, LOCKED, SCREENSAVER, SCREENSAVER_RUNNING

log = logging.getLogger(__name__)

SYSTEM_BUS_SOCKET = Path("/var/run/dbus/system_bus_socket")  # the D-Bus specification's default

LOGIN1 = "org.freedesktop.login1"
LOGIN1_PATH = "/org/freedesktop/login1"
MANAGER_IFACE = "org.freedesktop.login1.Manager"
SESSION_IFACE = "org.freedesktop.login1.Session"
USER_IFACE = "org.freedesktop.login1.User"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"

# (bus name, object path, interface), asked in this order.
SCREENSAVERS = (
    ("org.freedesktop.ScreenSaver", "/org/freedesktop/ScreenSaver", "org.freedesktop.ScreenSaver"),
    ("org.freedesktop.ScreenSaver", "/ScreenSaver", "org.freedesktop.ScreenSaver"),
    ("org.gnome.ScreenSaver", "/org/gnome/ScreenSaver", "org.gnome.ScreenSaver"),
    ("org.cinnamon.ScreenSaver", "/org/cinnamon/ScreenSaver", "org.cinnamon.ScreenSaver"),
    ("org.mate.ScreenSaver", "/org/mate/ScreenSaver", "org.mate.ScreenSaver"),
)

# Error names that mean "nobody is there to answer this", as opposed to a failure of the call.
_NOT_THERE = frozenset(
    {
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.UnknownObject",
        "org.freedesktop.DBus.Error.UnknownInterface",
        "org.freedesktop.DBus.Error.UnknownMethod",
        "org.freedesktop.DBus.Error.NotSupported",
    }
)
_NO_SUCH_PROPERTY = frozenset(
    {"org.freedesktop.DBus.Error.UnknownProperty", "org.freedesktop.DBus.Error.InvalidArgs"}
)


class BusUnreachable(Exception):
    """The bus could not be reached, or the connection to it broke."""


class NoAnswer(Exception):
    """A call got no reply within the timeout."""


class ErrorReply(Exception):
    """The bus or a service answered a call with a D-Bus error."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}" if text else name)
        self.name = name


class Bus:
    """One connection to a message bus, opened on first use and reopened (at most every
    ``retry_seconds``) after it fails."""

    def __init__(
        self, address: str, label: str, *, timeout: float = 1.0, retry_seconds: float = 30.0
    ) -> None:
        self.address = address
        self.label = label
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._conn: DBusConnection | None = None
        self._failed_at: float | None = None
        self._failure = ""

    def _connect(self, now: float) -> DBusConnection:
        if self._conn is not None:
            return self._conn
        if self._failed_at is not None and now - self._failed_at < self.retry_seconds:
            raise BusUnreachable(self._failure)
        try:
            self._conn = open_dbus_connection(self.address, auth_timeout=self.timeout)
        except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a transport jeepney cannot use
            self._failed_at, self._failure = (
                now,
                f"cannot connect to the {self.label} ({self.address}): {exc}",
            )
            raise BusUnreachable(self._failure) from exc
        self._failed_at = None
        return self._conn

    def call(
        self,
        now: float,
        target: tuple[str, str, str],
        method: str,
        signature: str | None = None,
        body: tuple[Any, ...] = (),
    ) -> tuple[Any, ...]:
        """Call ``method`` on (bus name, object path, interface); the reply's body."""
        conn = self._connect(now)
        name, path, interface = target
        msg = new_method_call(DBusAddress(path, bus_name=name, interface=interface), method, signature, body)
        try:
            reply = conn.send_and_get_reply(msg, timeout=self.timeout)
        except TimeoutError as exc:  # the service is slow or stuck; the bus itself may be fine
            raise NoAnswer(f"{name} did not answer {method} within {self.timeout:g}s") from exc
        except OSError as exc:
            self._drop(now, f"the {self.label} went away: {exc}")
            raise BusUnreachable(self._failure) from exc
        if reply.header.message_type is MessageType.error:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise ErrorReply(str(reply.header.fields.get(HeaderFields.error_name, "")), text)
        return tuple(reply.body)

    def get_property(self, now: float, target: tuple[str, str, str], prop: str) -> Any:
        name, path, interface = target
        (variant,) = self.call(now, (name, path, PROPERTIES_IFACE), "Get", "ss", (interface, prop))
        return variant[1]  # a variant arrives as (signature, value)

    def _drop(self, now: float, why: str) -> None:
        log.debug("dropping the D-Bus connection: %s", why)
        self.close()
        self._failed_at, self._failure = now, why

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except OSError:
                pass


def system_bus_address(env: Mapping[str, str], socket: Path = SYSTEM_BUS_SOCKET) -> str | None:
    address = env.get("DBUS_SYSTEM_BUS_ADDRESS")
    if address:
        return address
    return f"unix:path={socket}" if socket.exists() else None


def session_bus_address(env: Mapping[str, str]) -> str | None:
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = env.get("XDG_RUNTIME_DIR")  # systemd's per-user bus, where the variable is not passed on
    if runtime and (Path(runtime) / "bus").exists():
        return f"unix:path={Path(runtime) / 'bus'}"
    return None


class LogindLock:
    """``lock``: logind's ``LockedHint`` on our session."""

    name = LOCK

    def __init__(self, bus: Bus, *, session_id: str | None = None, pid: int = 0, uid: int = 0) -> None:
        self.bus = bus
        self.session_id = session_id or None
        self.pid = pid or os.getpid()
        self.uid = uid if uid else os.getuid()
        self._session: str | None = None  # object path, found on the first check

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, system_socket: Path = SYSTEM_BUS_SOCKET) -> Detector:
        address = system_bus_address(env, system_socket)
        if address is None:
            return StaticDetector(
                LOCK,
                Reading.unsupported(
                    f"no system D-Bus (DBUS_SYSTEM_BUS_ADDRESS is not set and {system_socket} does not exist)"
                ),
            )
        return cls(Bus(address, "system bus"), session_id=env.get("XDG_SESSION_ID"))

    def _find_session(self, now: float) -> str:
        manager = (LOGIN1, LOGIN1_PATH, MANAGER_IFACE)
        if self.session_id:
            return str(self.bus.call(now, manager, "GetSession", "s", (self.session_id,))[0])
        try:
            return str(self.bus.call(now, manager, "GetSessionByPID", "u", (self.pid,))[0])
        except ErrorReply as exc:
            if exc.name != "org.freedesktop.login1.NoSessionForPID":
                raise
        # Not in a session (a systemd user service): the user's graphical session, if any.
        user = str(self.bus.call(now, manager, "GetUser", "u", (self.uid,))[0])
        _session_id, path = self.bus.get_property(now, (LOGIN1, user, USER_IFACE), "Display")
        if path == "/":
            raise _NoSession(f"not in a logind session, and uid {self.uid} has no graphical session")
        return str(path)

    def check(self, ctx: CheckContext) -> Reading:
        try:
            if self._session is None:
                self._session = self._find_session(ctx.now)
            locked = self.bus.get_property(ctx.now, (LOGIN1, self._session, SESSION_IFACE), "LockedHint")
        except BusUnreachable as exc:
            return Reading.unavailable(str(exc))
        except NoAnswer as exc:
            return Reading(Condition.UNKNOWN, None, str(exc))
        except _NoSession as exc:
            return Reading.unsupported(str(exc))
        except ErrorReply as exc:
            return self._on_error(exc)
        where = f"logind session {self._session}"
        return (
            Reading.active(LOCKED, f"{where}: LockedHint") if locked else Reading.clear(f"{where} unlocked")
        )

    def _on_error(self, exc: ErrorReply) -> Reading:
        if exc.name in (
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.NameHasNoOwner",
        ):
            self._session = None
            return Reading.unsupported(f"logind is not running (no {LOGIN1} on the system bus)")
        if exc.name in _NO_SUCH_PROPERTY:
            return Reading.unsupported(f"this logind has no LockedHint (systemd older than 230?): {exc}")
        if self._session is not None:  # the session went away (logout): find ours again next time
            self._session = None
            return Reading.unavailable(f"logind session gone: {exc}")
        return Reading.unsupported(f"no logind session found: {exc}")

    def describe(self) -> str:
        return f"logind LockedHint on {self.bus.address}"

    def close(self) -> None:
        self.bus.close()


class _NoSession(Exception):
    pass


class ScreenSaverState:
    """``screensaver``: ``GetActive()`` of the screensaver service on the session bus."""

    name = SCREENSAVER

    def __init__(self, bus: Bus, *, retry_seconds: float = 30.0) -> None:
        self.bus = bus
        self.retry_seconds = retry_seconds
        self._service: tuple[str, str, str] | None = None
        self._missing_at: float | None = None
        self._missing = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Detector:
        address = session_bus_address(env)
        if address is None:
            return StaticDetector(
                SCREENSAVER,
                Reading.unsupported(
                    "no session D-Bus (DBUS_SESSION_BUS_ADDRESS is not set, no $XDG_RUNTIME_DIR/bus)"
                ),
            )
        return cls(Bus(address, "session bus"))

    def _discover(self, now: float) -> tuple[tuple[str, str, str], bool] | None:
        tried = []
        for service in SCREENSAVERS:
            try:
                (active,) = self.bus.call(now, service, "GetActive")
            except ErrorReply as exc:
                if exc.name not in _NOT_THERE:
                    raise
                tried.append(f"{service[0]} {service[1]}")
                continue
            return service, bool(active)
        self._missing_at = now
        self._missing = (
            "no screensaver service answers GetActive on the session bus (tried " + ", ".join(tried) + ")"
        )
        return None

    def check(self, ctx: CheckContext) -> Reading:
        try:
            if self._service is None:
                if self._missing_at is not None and ctx.now - self._missing_at < self.retry_seconds:
                    return Reading.unsupported(self._missing)
                found = self._discover(ctx.now)
                if found is None:
                    return Reading.unsupported(self._missing)
                self._service, active = found
            else:
                (active,) = self.bus.call(ctx.now, self._service, "GetActive")
        except BusUnreachable as exc:
            return Reading.unavailable(str(exc))
        except NoAnswer as exc:
            return Reading(Condition.UNKNOWN, None, str(exc))
        except ErrorReply as exc:
            if exc.name in _NOT_THERE:  # the screensaver went away: look for one again
                self._service = None
                return Reading.unavailable(f"the screensaver service went away: {exc}")
            return Reading(Condition.UNKNOWN, None, f"GetActive failed: {exc}")
        where = self._service[0]
        return (
            Reading.active(SCREENSAVER_RUNNING, f"{where}: active")
            if active
            else Reading.clear(f"{where}: not active")
        )

    def describe(self) -> str:
        return f"{self._service[0]} on the session bus" if self._service else "screensaver on the session bus"

    def close(self) -> None:
        self.bus.close()
