"""Running instances: one dream-window per output folder, and where the CLI finds each one.

Two files, two jobs:

* **The lock**, ``<output folder>/.dream-window.lock``: :class:`InstanceLock` holds an OS file lock
  on it (``flock`` on POSIX, ``LockFileEx`` on Windows, through ``filelock``) while the dream runs.
  The operating system drops the lock when the process dies, however it dies, so a crash or a
  ``kill -9`` never blocks the next start and there is nothing to clean up. A second ``run`` on the
  same folder fails with :class:`~dream_window.errors.AlreadyRunning`, naming the holder's pid and
  viewer. The lock file's content is never read: on Windows a locked file cannot be.
* **The registry**, one JSON file per running instance in ``<home>/instances/`` (see
  :func:`dream_window.user_dirs.home_dir`: the per-user folder that already holds the control token
  and the logs, so every process of the same user finds it, from any working directory).
  :class:`RegistryService` writes the entry once the viewer is up (its URL is known then) and
  removes it on close: pid, output folder, viewer URL, where the control token is, the config
  file. ``dream-window status|pause|skip|like ...`` read it to find the dream without a config.
  The file is named after a hash of the output folder, so a folder has at most one entry.

A dream killed with ``kill -9`` cannot remove its entry. Readers therefore trust an entry only
while its process lives and was started before the entry was written (a pid the system gave to a
later process is not ours); anything else, or an unreadable file, is stale and removed by
:func:`live_instances`. The same test, plus the heartbeat ``updated_at`` of status.json, tells
``dream-window status`` that a "running" status.json was left by a dead or hung process
(:func:`status_staleness`).

Liveness uses psutil only: ``os.kill(pid, 0)`` is not a probe on Windows (it sends CTRL_C_EVENT).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import psutil
from filelock import FileLock, Timeout

from dream_window.config import DreamConfig
from dream_window.dream.status import STATUS_FILE
from dream_window.errors import AlreadyRunning, ConfigError, FrameWriteError
from dream_window.file_ops import atomic_write_json
from dream_window.user_dirs import home_dir
from dream_window.values.check import Check

if TYPE_CHECKING:
    from dream_window.dream.service import Dream

log = logging.getLogger(__name__)

LOCK_FILE = ".dream-window.lock"
REGISTRY_FOLDER = "instances"
# How often a live dream refreshes status.json's updated_at when it does not say (heartbeat_s).
DEFAULT_HEARTBEAT_S = 5.0
# A status.json whose updated_at is older than this many heartbeats comes from a hung process.
MISSED_HEARTBEATS = 3
# Process start times and our timestamps come from different clocks (boot time + ticks on Linux,
# seconds-precision ISO in status.json): allow this much before calling a pid reused.
CLOCK_SLACK_S = 2.0
_WILDCARD_BINDS = ("0.0.0.0", "::", "")


# --- liveness -----------------------------------------------------------------------------------


def process_alive(pid: int, *, started_by: datetime | None = None) -> bool:
    """True when process ``pid`` runs and, when ``started_by`` is given, was started by then
    (a pid reused by a process started later is not the one that wrote our files)."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if started_by is not None and proc.create_time() > started_by.timestamp() + CLOCK_SLACK_S:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE  # killed, not yet reaped by its parent
    except psutil.NoSuchProcess:  # ZombieProcess is a subclass: gone too
        return False
    except psutil.AccessDenied:  # another user's process: it exists, we may not look closer
        return True


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.astimezone()  # naive: local time


def same_path(a: Path | str, b: Path | str) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder (resolved; case-blind where the OS is)."""
    return _path_key(a) == _path_key(b)


def _path_key(p: Path | str) -> str:
    return os.path.normcase(str(Path(p).expanduser().resolve()))


# --- the registry -------------------------------------------------------------------------------


def registry_dir() -> Path:
    """Where running instances register: ``<home>/instances``."""
    return home_dir() / REGISTRY_FOLDER


def registration_path(output_dir: Path) -> Path:
    """The registry file of the instance writing into ``output_dir`` (one per folder)."""
    digest = hashlib.sha1(_path_key(output_dir).encode("utf-8"), usedforsecurity=False).hexdigest()
    return registry_dir() / f"{digest[:16]}.json"


def control_address(host: str, port: int) -> str:
    """The base URL a local client reaches a viewer bound to ``host:port`` on (a wildcard bind is
    reached on 127.0.0.1)."""
    if host in _WILDCARD_BINDS:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class Registration:
    """One running dream-window, as written to its registry file."""

    pid: int
    output_dir: Path  # resolved, absolute
    url: str | None  # the viewer, as people open it; None when the viewer is off or did not start
    control_url: str | None  # where a local client reaches the control API (the CLI's base URL)
    token_path: str | None  # the control token file, when the API requires one
    config_path: str | None  # the config file it was started with, when there was one
    started_at: str  # ISO 8601; an entry older than its pid's process is stale

    @classmethod
    def for_this_process(
        cls,
        output_dir: Path,
        *,
        url: str | None = None,
        control_url: str | None = None,
        token_path: Path | None = None,
        config_path: Path | None = None,
    ) -> Registration:
        return cls(
            pid=os.getpid(),
            output_dir=Path(output_dir).expanduser().resolve(),
            url=url,
            control_url=control_url,
            token_path=str(token_path) if token_path is not None else None,
            config_path=str(Path(config_path).resolve()) if config_path is not None else None,
            started_at=datetime.now(UTC).isoformat(),
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "output_dir": str(self.output_dir)}

    @classmethod
    def from_json(cls, data: object) -> Registration:
        """ValueError when ``data`` is not a registration."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        pid, output_dir, started_at = data.get("pid"), data.get("output_dir"), data.get("started_at")
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise ValueError(f"pid must be an integer, got {pid!r}")
        if not isinstance(output_dir, str) or not output_dir:
            raise ValueError(f"output_dir must be a path, got {output_dir!r}")
        if _parse_time(started_at) is None:
            raise ValueError(f"started_at must be an ISO 8601 time, got {started_at!r}")
        optional: dict[str, str | None] = {}
        for key in ("url", "control_url", "token_path", "config_path"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{key} must be a string or null, got {value!r}")
            optional[key] = value
        return cls(pid=pid, output_dir=Path(output_dir), started_at=str(started_at), **optional)

    @property
    def alive(self) -> bool:
        return process_alive(self.pid, started_by=_parse_time(self.started_at))

    def describe(self) -> str:
        """``pid 1234, output /x, viewer http://...`` for one-line messages."""
        viewer = f"viewer {self.url}" if self.url else "viewer off"
        return f"pid {self.pid}, output {self.output_dir}, {viewer}"


def register(registration: Registration) -> Path:
    """Write ``registration`` (atomically); returns its file. FrameWriteError when it cannot."""
    path = registration_path(registration.output_dir)
    # Private: it says where this user's dream listens and which token file it uses.
    atomic_write_json(path, registration.to_json(), fsync=False, mode=0o600)
    return path


def unregister(output_dir: Path, *, pid: int | None = None) -> None:
    """Remove the entry for ``output_dir`` if process ``pid`` (default: this one) wrote it."""
    path = registration_path(output_dir)
    entry = _read(path)
    if entry is not None and entry.pid == (os.getpid() if pid is None else pid):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def live_instances() -> list[Registration]:
    """The registered instances that are running, oldest first; stale entries are removed."""
    try:
        files = sorted(registry_dir().glob("*.json"))
    except OSError:
        return []
    live: list[Registration] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:  # gone since the listing, or held by a writer (Windows): not ours to judge
            continue
        entry = _parse(text)
        if entry is not None and entry.alive:
            live.append(entry)
        else:
            _remove_stale(path, text)
    return sorted(live, key=lambda r: r.started_at)


def find_instance(output_dir: Path) -> Registration | None:
    """The live instance writing into ``output_dir``, if any."""
    entry = _read(registration_path(output_dir))
    return entry if entry is not None and entry.alive and same_path(entry.output_dir, output_dir) else None


def _read(path: Path) -> Registration | None:
    try:
        return _parse(path.read_text(encoding="utf-8"))
    except OSError:
        return None


def _parse(text: str) -> Registration | None:
    """The entry in ``text``; None when it is not one (garbage is not an error: it is stale)."""
    try:
        return Registration.from_json(json.loads(text))
    except ValueError:  # not JSON (JSONDecodeError), or not an entry
        return None


def _remove_stale(path: Path, text: str) -> None:
    # Only if unchanged: a dream starting on that folder may have just written its own entry.
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8") == text:
            log.debug("removing stale instance registration %s", path)
            path.unlink()


# --- the lock -----------------------------------------------------------------------------------


class InstanceLock:
    """The one-instance-per-output-folder lock; the OS releases it when the process dies.

    ``acquire()`` raises :class:`AlreadyRunning` when another process holds it. Use as a context
    manager around the whole dream::

        with InstanceLock(config.output_dir):
            ...
    """

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir).expanduser().resolve()
        self.path = self.output_dir / LOCK_FILE
        # Never a soft (marker-file) lock: a crash would leave it behind and block the next start.
        self._lock = FileLock(self.path, timeout=0, thread_local=False, fallback_to_soft=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> None:
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create output folder {self.output_dir}: {exc.strerror or exc}"
            ) from exc
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            raise self._already_running() from None
        except OSError as exc:
            raise ConfigError(f"cannot lock output folder {self.output_dir}: {exc.strerror or exc}") from exc

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _already_running(self) -> AlreadyRunning:
        pid, url = holder(self.output_dir)
        said = ", ".join(
            part for part in (f"pid {pid}" if pid else "", f"viewer {url}" if url else "") if part
        )
        who = f"another dream-window ({said})" if said else "another dream-window"
        return AlreadyRunning(
            f"{who} is already running on output folder {self.output_dir}; "
            "stop it first or use another --output",
            output_dir=str(self.output_dir),
            pid=pid,
            url=url,
        )


def holder(output_dir: Path) -> tuple[int | None, str | None]:
    """(pid, viewer URL) of the dream-window running on ``output_dir``, as far as it has said:
    its registry entry, else its status.json (a dream still starting has written neither)."""
    entry = find_instance(output_dir)
    if entry is not None:
        return entry.pid, entry.url
    try:
        status = json.loads((Path(output_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(status, dict):
        return None, None
    pid = status.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int):
        return None, None
    if not process_alive(pid, started_by=_parse_time(status.get("started_at"))):
        return None, None  # a previous run's status.json
    viewer = status.get("viewer")
    url = viewer.get("url") if isinstance(viewer, dict) else None
    return pid, url if isinstance(url, str) else None


# --- status.json staleness ----------------------------------------------------------------------


def status_staleness(
    status: dict[str, Any], *, now: datetime | None = None
) -> Literal["gone", "not answering"] | None:
    """Why a status document that says the dream runs is not to be believed, or None.

    ``"gone"``: its process is dead. ``"not answering"``: the process lives but has missed
    :data:`MISSED_HEARTBEATS` heartbeats (``updated_at`` is refreshed every ``heartbeat_s`` while
    the dream lives, paused or not). A ``stopped`` status is never stale: it says so itself.
    """
    if status.get("state") == "stopped":
        return None
    pid = status.get("pid")
    if isinstance(pid, int) and not isinstance(pid, bool):
        if not process_alive(pid, started_by=_parse_time(status.get("started_at"))):
            return "gone"
    heartbeat = status.get("heartbeat_s")
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float) or heartbeat <= 0:
        heartbeat = DEFAULT_HEARTBEAT_S
    updated = _parse_time(status.get("updated_at"))
    if updated is None:
        return None  # nothing to judge by
    age = ((now or datetime.now(UTC)) - updated).total_seconds()
    return "not answering" if age > MISSED_HEARTBEATS * heartbeat else None


# --- the service --------------------------------------------------------------------------------


class RegistryService:
    """Registers the running dream in the registry once the viewer is up; unregisters on close.

    Put it after the viewer in ``app.build_services`` (it reads the viewer's URL from the dream's
    status). ``token_path`` gives where the control token lives when the viewer requires one (the
    web layer knows; this module may not import it). ``config_path``: the file the dream was
    started with, so ``--config FILE`` finds it even when ``--output`` moved its folder.
    """

    name = "instance"

    def __init__(
        self,
        config: DreamConfig,
        *,
        config_path: Path | None = None,
        token_path: Callable[[], Path] | None = None,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._token_path = token_path
        self._registered: Path | None = None

    async def start(self, dream: Dream) -> None:
        viewer = dream.snapshot().get("viewer")
        url = viewer.get("url") if isinstance(viewer, dict) else None
        url = url if isinstance(url, str) else None
        control_url = None
        token_path = None
        if url is not None:
            port = urlsplit(url).port
            if port is not None:
                control_url = control_address(self.config.viewer.host, port)
            if isinstance(viewer, dict) and viewer.get("token_required") and self._token_path is not None:
                token_path = self._token_path()
        registration = Registration.for_this_process(
            self.config.output_dir,
            url=url,
            control_url=control_url,
            token_path=token_path,
            config_path=self._config_path,
        )
        try:
            self._registered = await asyncio.to_thread(register, registration)
        except FrameWriteError as exc:
            log.error("not registered as a running instance (%s): other commands will need --config", exc)
            return
        log.debug("registered in %s", self._registered)

    async def close(self) -> None:
        if self._registered is None:
            return
        self._registered = None
        await asyncio.to_thread(unregister, self.config.output_dir)

    def describe(self) -> dict[str, object] | None:
        return {"registry": str(self._registered)} if self._registered is not None else None

    async def doctor_checks(self) -> list[Check]:
        return []

    async def free_memory(self) -> None:
        return None
