"""``dream-window status``: the table, and "not running" for a status.json a dead or hung process left."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from dream_window.cli import main
from tests.test_instances import dead_pid

LONG_AGO = "2026-01-01T12:00:00+00:00"


def write_status(folder: Path, **fields: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    status = {"state": "running", "mode": "hybrid", "backend": "builtin", "frame_count": 3, **fields}
    (folder / "status.json").write_text(json.dumps(status), encoding="utf-8")
    return folder


def status(*args: str) -> Result:
    return CliRunner().invoke(main, ["status", *args])


def test_a_killed_dream_is_not_running(tmp_path: Path) -> None:
    pid = dead_pid()
    out = write_status(tmp_path / "out", pid=pid, updated_at=LONG_AGO, started_at=LONG_AGO)
    r = status("--output", str(out))
    assert (r.exit_code, r.output) == (1, f"not running (last seen {LONG_AGO}, process {pid} gone)\n")

    r = status("--output", str(out), "--json")
    assert r.exit_code == 1
    doc = json.loads(r.output)
    assert doc["stale"] is True and doc["pid"] == pid and doc["state"] == "running"


def test_a_hung_dream_is_not_answering(tmp_path: Path) -> None:
    out = write_status(tmp_path / "out", pid=os.getpid(), updated_at=LONG_AGO, heartbeat_s=5)
    r = status("-o", str(out))
    assert (r.exit_code, r.output) == (
        1,
        f"not running (last seen {LONG_AGO}, process {os.getpid()} not answering)\n",
    )


def test_a_live_dream_shows_its_status(tmp_path: Path) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    # A long heartbeat: however slow this machine, the document stays fresh for the test.
    out = write_status(tmp_path / "out", pid=os.getpid(), updated_at=now, started_at=now, heartbeat_s=3600)
    r = status("-o", str(out))
    assert r.exit_code == 0 and "not running" not in r.output
    assert "running" in r.output and "hybrid" in r.output

    r = status("-o", str(out), "--json")
    assert r.exit_code == 0 and "stale" not in json.loads(r.output)


def test_a_stopped_dream_is_shown_as_stopped(tmp_path: Path) -> None:
    out = write_status(tmp_path / "out", state="stopped", pid=dead_pid(), updated_at=LONG_AGO)
    r = status("-o", str(out))
    assert r.exit_code == 0 and "stopped" in r.output and "not running" not in r.output


def test_no_status_file_is_one_line(tmp_path: Path) -> None:
    r = status("-o", str(tmp_path / "nothing"))
    assert r.exit_code == 1 and r.output.startswith("error: no status file at ") and r.output.count("\n") == 1
