"""Issue 13, hardening: what a user meets at the edges, through ``python -m dream_window`` as they
run it (real subprocesses), plus the pieces underneath.

* an output folder the OS will not let us use is a config error naming ``system.output_dir``;
* the control token never reaches the log file, and the log file is owner-only;
* SIGINT or SIGTERM in the first moments of start-up exits quietly (130 / 143), not with a
  KeyboardInterrupt traceback or a kill by the default action.

(The control API's bounds and its fuzzing are in tests/web/test_api_properties.py.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dream_window.logging_setup import CONSOLE_ONLY, PrivateRotatingFileHandler, RedactingFormatter, redact
from tests.conftest import write_config

FAST: dict[str, Any] = {
    "system": {"backend": "builtin", "comfyui_url": "http://127.0.0.1:9"},
    "generation": {"frame_interval": 0.05, "keyframe_interval": 3, "cache": {"enabled": False}},
    "viewer": {"enabled": False},
    "game_detection": {"enabled": False},
}
LINUX = sys.platform.startswith("linux")


def dream_window(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dream_window", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def with_sections(**sections: dict[str, Any]) -> dict[str, Any]:
    return {name: {**FAST.get(name, {}), **sections.get(name, {})} for name in {*FAST, *sections}}


# --- output folder ------------------------------------------------------------------------------


def _file_instead_of_folder(tmp: Path) -> tuple[Path, str]:
    (tmp / "afile").write_text("not a folder")
    return tmp / "afile", "File exists"


def _file_instead_of_parent(tmp: Path) -> tuple[Path, str]:
    (tmp / "afile").write_text("not a folder")
    return tmp / "afile" / "output", "Not a directory"


def _file_instead_of_history(tmp: Path) -> tuple[Path, str]:
    (tmp / "output").mkdir()
    (tmp / "output" / "frames").write_text("not a folder")
    return tmp / "output", "File exists"


def _under_proc(tmp: Path) -> tuple[Path, str]:
    return Path("/proc/dream-window-test/output"), "No such file or directory"


def _proc_itself(tmp: Path) -> tuple[Path, str]:
    # Exists, but nothing can be created in it, not even by root (filelock alone reported this as
    # "another dream-window is already running").
    return Path("/proc"), ""


def _sysfs(tmp: Path) -> tuple[Path, str]:
    # A filesystem that refuses new files to everyone, root included (chmod would not stop root).
    return Path("/sys/dream-window-test"), ""


LINUX_ONLY = pytest.mark.skipif(not LINUX, reason="/proc and /sys are Linux filesystems")
UNUSABLE_FOLDERS = [
    pytest.param(_file_instead_of_folder, id="file-in-place-of-folder"),
    pytest.param(_file_instead_of_parent, id="file-in-place-of-parent"),
    pytest.param(_file_instead_of_history, id="file-in-place-of-frames"),
    pytest.param(_under_proc, id="under-proc", marks=LINUX_ONLY),
    pytest.param(_proc_itself, id="proc-itself", marks=LINUX_ONLY),
    pytest.param(_sysfs, id="sysfs", marks=LINUX_ONLY),
]


@pytest.mark.parametrize("make", UNUSABLE_FOLDERS)
def test_an_unusable_output_folder_is_a_config_error_naming_the_key(tmp_path: Path, make: Any) -> None:
    folder, reason = make(tmp_path)
    cfg = write_config(tmp_path, with_sections(system={"output_dir": str(folder)}))
    r = dream_window("run", "--config", str(cfg), "--max-frames", "1", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("config error:")]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"config error: system.output_dir: cannot use {folder} as the output folder: ")
    assert reason in lines[0]
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr
    # (OutputWriter's and check_output_dir's own cases: tests/dream/test_output.py)


# --- secrets ------------------------------------------------------------------------------------


def test_the_control_token_reaches_the_console_not_the_log_file(tmp_path: Path, dream_home: Path) -> None:
    # 0.0.0.0 requires the token; port 0: any free port. The viewer is up for the one frame.
    cfg = write_config(tmp_path, with_sections(viewer={"enabled": True, "host": "0.0.0.0", "port": 0}))
    r = dream_window("run", "--config", str(cfg), "--max-frames", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    token = (dream_home / "control-token").read_text().strip()
    assert f"?token={token}" in r.stderr  # the user still gets the URL to open, once
    log_file = dream_home / "logs" / "dream-window.log"
    text = log_file.read_text()
    assert "control token created in" in text  # the event is logged; the secret is not
    assert token not in text
    if os.name == "posix":
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


def test_redaction_blanks_tokens_in_urls_cookies_and_headers() -> None:
    assert redact("open http://h:1/?token=abc123&x=1 now") == "open http://h:1/?token=<redacted>&x=1 now"
    assert redact("Cookie: dw_token=s3cr3t; other=1") == "Cookie: dw_token=<redacted>; other=1"
    assert redact("Authorization: Bearer s3cr3t") == "Authorization: Bearer <redacted>"
    assert redact("send 'Authorization: Bearer <token>'") == "send 'Authorization: Bearer <token>'"


def test_log_file_is_private_redacted_and_skips_console_only_records(tmp_path: Path) -> None:
    log_file = tmp_path / "dw.log"
    handler = PrivateRotatingFileHandler(log_file, maxBytes=300, backupCount=2, encoding="utf-8")
    handler.setFormatter(RedactingFormatter("%(message)s"))
    handler.addFilter(lambda record: not getattr(record, "console_only", False))
    log = logging.getLogger("tests.hardening.private")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.warning("open %s?token=%s", "http://h:1/", "SECRET1", extra=CONSOLE_ONLY)
        log.info("by accident: %s", "http://h:1/?token=SECRET2")
        try:
            raise RuntimeError("Bearer SECRET3")
        except RuntimeError:
            log.exception("failed")
        for i in range(20):  # rotate a few times
            log.info("filler line %d %s", i, "x" * 40)
    finally:
        log.removeHandler(handler)
        handler.close()
    files = [log_file, *tmp_path.glob("dw.log.*")]
    assert len(files) == 3
    text = "".join(f.read_text() for f in files)
    assert "SECRET" not in text
    if os.name == "posix":
        assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


# --- signals in the first moments ---------------------------------------------------------------


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: SigCgt in /proc/<pid>/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


# A signal whose handler runs inside a weakref callback, as the import system's module locks have:
# Python cannot raise the handler's SystemExit there ("Exception ignored in ...") and goes on.
# CI drew one during the CLI's imports: a traceback on stderr, and the dream went on to run.
SWALLOWED = """
import os, signal, sys, weakref
from dream_window import early_signals
early_signals.install()
class Held: pass
held = Held()
def bye(_):
    os.kill(os.getpid(), signal.SIGTERM)
    # A loop checks for pending signals at each turn: the handler runs in here on any Python
    # version, not only on one that runs it as soon as os.kill returns.
    for _ in range(10_000):
        pass
ref = weakref.ref(held, bye)
del held  # the callback runs; the handler's exit is raised inside it, where it cannot propagate
print("went on", flush=True)
"""


def test_a_signal_swallowed_during_the_imports_still_exits_quietly() -> None:
    script = SWALLOWED + "early_signals.exit_if_signalled()\nprint('not stopped', flush=True)\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, proc
    assert proc.stdout == "went on\n"  # what __main__ does after the imports: exit, not the CLI
    assert proc.stderr == ""  # no "Exception ignored in ..." and its traceback


def test_a_signal_swallowed_after_the_imports_stops_the_dream_before_a_frame(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {**FAST, "system": {**FAST["system"], "output_dir": str(tmp_path / "out")}})
    script = SWALLOWED + (
        "from dream_window.cli import main\n"
        f"sys.argv = ['dream-window', 'run', '--config', {str(cfg)!r}, '--max-frames', '50']\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["state"] == "stopped" and status["frame_count"] == 0, status


# Runs the rest of its command line with SIGINT at its default action, in the same process (so
# the test can watch its pid). A suite started in the background by a shell without job control
# (as a CI runner may start it) inherits SIGINT ignored, and the CLI rightly keeps an ignored
# signal ignored: without this, such a suite fails these tests for how it was started.
WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


@pytest.mark.skipif(not LINUX, reason="reads /proc/<pid>/status to see the handlers go in")
@pytest.mark.parametrize("delay", [0, 0.05, 0.1, 0.2, 0.3])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_early_in_start_up_exits_quietly(tmp_path: Path, sig: signal.Signals, delay: float) -> None:
    """Counted from the moment the handlers are in (the interpreter's own start, some 20 ms before
    any of our code runs, is Python's and the OS's): the CLI is still being imported then."""
    cfg = write_config(tmp_path, FAST)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WITH_SIGINT,
            "-m",
            "dream_window",
            "run",
            "--config",
            str(cfg),
            "--max-frames",
            "3",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        # Python itself never catches SIGTERM: once it is caught, our handlers are in.
        while not _catches(proc.pid, signal.SIGTERM):
            assert proc.poll() is None and time.monotonic() < deadline, "the handlers never went in"
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # 128 + n before the dream runs; 0 when it was already dreaming (run_dream's own handlers). At
    # once, the CLI (most of a second to import) cannot have got that far.
    assert proc.returncode in ((128 + sig,) if delay <= 0.05 else (128 + sig, 0)), (proc.returncode, stderr)
    assert (
        "Traceback" not in stderr and "KeyboardInterrupt" not in stderr and "Exception ignored" not in stderr
    )
