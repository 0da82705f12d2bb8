"""One dream-window per output folder, and the registry the CLI finds running instances in: real
lock files held by real processes, real registry files, real dead pids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dream_window.errors import AlreadyRunning, ConfigError
from dream_window.instances import (
    LOCK_FILE,
    InstanceLock,
    Registration,
    RegistryService,
    find_instance,
    live_instances,
    process_alive,
    register,
    registration_path,
    registry_dir,
    status_staleness,
    unregister,
)
from tests.conftest import fast_config

# Takes the lock, says so, and holds it until its stdin closes (or it is killed).
HOLDER = """
import sys
from pathlib import Path
from dream_window.instances import InstanceLock
lock = InstanceLock(Path(sys.argv[1]))  # kept: a dropped lock is released
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder_of(tmp_path: Path) -> Iterator[Any]:
    """``holder_of(folder)`` → a child process holding the lock on ``folder``; killed after the test."""
    children: list[subprocess.Popen[str]] = []

    def spawn(folder: Path) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        return child

    yield spawn
    for child in children:
        child.kill()
        child.wait()


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def entry(
    output_dir: Path, *, pid: int | None = None, started_at: str | None = None, **fields: Any
) -> Registration:
    """A registration of this process for ``output_dir``, or as if another ``pid`` had made it."""
    reg = Registration.for_this_process(output_dir, **fields)
    return replace(reg, pid=pid or reg.pid, started_at=started_at or reg.started_at)


# --- the lock -----------------------------------------------------------------------------------


def test_a_second_instance_is_refused_naming_the_first_and_a_killed_one_frees_the_folder(
    tmp_path: Path, holder_of: Any
) -> None:
    out = tmp_path / "output"
    child = holder_of(out)
    assert (out / LOCK_FILE).exists()

    # Still starting: it has said nothing yet.
    with pytest.raises(AlreadyRunning) as refused:
        InstanceLock(out).acquire()
    assert str(refused.value) == (
        f"another dream-window is already running on output folder {out.resolve()}; "
        "stop it first or use another --output"
    )
    assert isinstance(refused.value, ConfigError)  # the CLI exits 2

    # Its status.json names it ...
    status = {"state": "running", "pid": child.pid, "viewer": {"url": "http://127.0.0.1:9/"}}
    (out / "status.json").write_text(json.dumps(status), encoding="utf-8")
    with pytest.raises(AlreadyRunning) as refused:
        InstanceLock(out).acquire()
    assert (refused.value.pid, refused.value.url) == (child.pid, "http://127.0.0.1:9/")
    assert f"another dream-window (pid {child.pid}, viewer http://127.0.0.1:9/) is already running" in str(
        refused.value
    )

    # ... and its registration, once made, is what counts.
    register(entry(out, pid=child.pid, url="http://127.0.0.1:7/"))
    with pytest.raises(AlreadyRunning) as refused:
        InstanceLock(out).acquire()
    assert (refused.value.pid, refused.value.url) == (child.pid, "http://127.0.0.1:7/")

    child.kill()  # kill -9: no chance to unlock or clean up
    child.wait()
    with InstanceLock(out) as lock:
        assert lock.held
    assert not lock.held
    assert live_instances() == []  # the dead child's registration went with it


def test_the_lock_is_exclusive_within_a_process_too(tmp_path: Path) -> None:
    with InstanceLock(tmp_path / "a") as first:
        with pytest.raises(AlreadyRunning):
            InstanceLock(tmp_path / "a").acquire()
        with InstanceLock(tmp_path / "b"):  # another folder is another lock
            pass
        assert first.held
    with InstanceLock(tmp_path / "a"):
        pass


def test_a_folder_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot create output folder"):
        InstanceLock(blocker / "output").acquire()


# --- the registry -------------------------------------------------------------------------------


def test_register_and_find_from_the_registry(tmp_path: Path, dream_home: Path) -> None:
    token = tmp_path / "token"
    reg = Registration.for_this_process(
        tmp_path / "out",
        url="http://127.0.0.1:8765/",
        control_url="http://127.0.0.1:8765",
        token_path=token,
        config_path=tmp_path / "config.yaml",
    )
    assert reg.output_dir == (tmp_path / "out").resolve() and reg.pid == os.getpid()
    path = register(reg)
    assert path.parent == registry_dir() == dream_home / "instances"
    assert path == registration_path(tmp_path / "out" / ".." / "out")  # one file per folder
    assert live_instances() == [reg]
    assert find_instance(tmp_path / "out") == reg
    assert find_instance(tmp_path / "other") is None

    unregister(tmp_path / "out", pid=dead_pid())  # not its to remove
    assert live_instances() == [reg]
    unregister(tmp_path / "out")
    assert not path.exists() and live_instances() == []
    unregister(tmp_path / "out")  # nothing there: nothing to do


def test_stale_registrations_are_ignored_and_removed(tmp_path: Path) -> None:
    live = register(entry(tmp_path / "live"))
    dead = register(entry(tmp_path / "dead", pid=dead_pid()))
    # This pid runs, but was started after the entry was written: the system reused it.
    reused = register(entry(tmp_path / "reused", started_at="2001-01-01T00:00:00+00:00"))
    garbage = {
        "notjson.json": "{not json",
        "list.json": "[]",
        "badpid.json": '{"pid": "1"}',
        "empty.json": "",
    }
    for name, text in garbage.items():
        (registry_dir() / name).write_text(text, encoding="utf-8")

    assert [r.output_dir for r in live_instances()] == [(tmp_path / "live").resolve()]
    assert live.exists()
    assert not dead.exists() and not reused.exists()
    assert sorted(p.name for p in registry_dir().iterdir()) == [live.name]


def test_no_registry_folder_is_no_instances() -> None:
    assert not registry_dir().exists()
    assert live_instances() == []


def test_process_alive() -> None:
    assert process_alive(os.getpid())
    assert process_alive(os.getpid(), started_by=datetime.now(UTC))
    assert not process_alive(os.getpid(), started_by=datetime(2001, 1, 1, tzinfo=UTC))
    assert not process_alive(dead_pid())
    assert not process_alive(0) and not process_alive(-1)


# --- the service --------------------------------------------------------------------------------


class ViewerSnapshot:
    """The part of the Dream a RegistryService reads: the status snapshot's viewer section."""

    def __init__(self, viewer: dict[str, object] | None) -> None:
        self.viewer = viewer

    def snapshot(self) -> dict[str, object]:
        return {"state": "starting"} if self.viewer is None else {"state": "starting", "viewer": self.viewer}


async def test_the_service_registers_the_viewer_and_unregisters_on_close(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path, viewer={"enabled": True, "host": "0.0.0.0", "port": 8765})
    token = tmp_path / "control-token"
    service = RegistryService(cfg, config_path=tmp_path / "config.yaml", token_path=lambda: token)
    assert service.describe() is None and await service.doctor_checks() == []
    await service.close()  # never started: nothing to do

    viewer = {"url": "http://my-pc:8765/", "token_required": True}
    await service.start(ViewerSnapshot(viewer))  # type: ignore[arg-type]
    (reg,) = live_instances()
    assert service.describe() == {"registry": str(registration_path(cfg.output_dir))}
    assert (reg.pid, reg.output_dir) == (os.getpid(), cfg.output_dir.resolve())
    assert (reg.url, reg.control_url) == ("http://my-pc:8765/", "http://127.0.0.1:8765")  # wildcard: loopback
    assert (reg.token_path, reg.config_path) == (str(token), str((tmp_path / "config.yaml").resolve()))
    await service.close()
    assert live_instances() == [] and service.describe() is None


@pytest.mark.parametrize(
    ("viewer", "control_url", "token"),
    [
        (None, None, None),  # viewer off
        ({"url": None, "error": "port 8765 in use"}, None, None),  # viewer did not start
        ({"url": "http://127.0.0.1:40123/", "token_required": False}, "http://127.0.0.1:40123", None),
    ],
)
async def test_what_the_service_registers_without_a_usable_viewer_or_token(
    tmp_path: Path, viewer: dict[str, object] | None, control_url: str | None, token: str | None
) -> None:
    cfg = fast_config(tmp_path, viewer={"enabled": viewer is not None, "host": "127.0.0.1", "port": 0})
    service = RegistryService(cfg, token_path=lambda: tmp_path / "control-token")
    await service.start(ViewerSnapshot(viewer))  # type: ignore[arg-type]
    (reg,) = live_instances()
    assert (reg.control_url, reg.token_path, reg.config_path) == (control_url, token, None)
    await service.close()


# --- status.json staleness ----------------------------------------------------------------------

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat(timespec="seconds")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"state": "running", "pid": "me", "updated_at": ago(1)}, None),
        ({"state": "paused", "pid": "me", "updated_at": ago(14)}, None),  # within 3 heartbeats of 5 s
        ({"state": "running", "pid": "me", "updated_at": ago(16)}, "not answering"),
        ({"state": "running", "pid": "me", "updated_at": ago(100), "heartbeat_s": 60}, None),
        ({"state": "running", "pid": "me", "updated_at": ago(200), "heartbeat_s": 60}, "not answering"),
        ({"state": "running", "pid": "dead", "updated_at": ago(1)}, "gone"),
        ({"state": "starting", "pid": "dead"}, "gone"),
        ({"state": "stopped", "pid": "dead", "updated_at": ago(10_000)}, None),  # it said so itself
        ({"state": "running", "pid": "me", "updated_at": "yesterday"}, None),  # nothing to judge by
        ({"state": "running", "updated_at": ago(60)}, "not answering"),
    ],
)
def test_status_staleness(status: dict[str, Any], expected: str | None) -> None:
    pids = {"me": os.getpid(), "dead": dead_pid()}
    if "pid" in status:
        status = {**status, "pid": pids[status["pid"]]}
    assert status_staleness(status, now=NOW) == expected
