"""Logging: rich console output plus a rotating log file under the home directory.

Secrets never reach the file. A record logged with ``extra=CONSOLE_ONLY`` (the control token's
first-run URL) is shown on the console and left out of the file; as a safety net the file's
formatter also blanks anything that looks like a credential (``token=...``, ``Bearer ...``), and
the file and its rotated copies are owner-only (0600) where the OS has such modes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import re
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

console = Console(stderr=True)

LOG_FILE = "dream-window.log"
# ``log.warning(..., extra=CONSOLE_ONLY)``: for the user's eyes now, never for the log file.
CONSOLE_ONLY: dict[str, Any] = {"console_only": True}
REDACTED = "<redacted>"
# token=... in URLs, query strings and cookies (dw_token=...); Authorization: Bearer ...
_SECRET = re.compile(r"(?i)(token=|bearer\s+)[^\s&;,'\"<>]+")


def redact(text: str) -> str:
    """``text`` with credential-looking values replaced by ``<redacted>``."""
    return _SECRET.sub(lambda m: m.group(1) + REDACTED, text)


def _not_console_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "console_only", False)


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then blanks secrets in the whole text (message, arguments, traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file readable by its owner only (0600), created so and kept so on rotation."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with contextlib.suppress(OSError):  # a file made by an older version, or another owner's
            os.chmod(self.baseFilename, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)  # the handler closes it


def setup_logging(*, level: str = "info", verbose: bool = False, log_dir: Path | None = None) -> Path | None:
    """Configure the root logger once. Returns the log file path (None when it could not be opened)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    console_level = logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO)
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(
            console=console,
            show_path=verbose,
            rich_tracebacks=verbose,
            markup=False,
            log_time_format="%H:%M:%S",
        )
    else:
        # Piped (a service manager, a log file, CI): one unwrapped line per record, easy to grep.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.setLevel(console_level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # Libraries are chatty at DEBUG; keep them at WARNING unless asked.
    for noisy in ("asyncio", "PIL", "aiohttp.access", "urllib3", "httpx", "filelock", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log_file = None
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_file = log_dir / LOG_FILE
            fh = PrivateRotatingFileHandler(log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
            fh.setLevel(logging.DEBUG)
            fh.setFormatter(RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
            fh.addFilter(_not_console_only)
            root.addHandler(fh)
            for old in log_dir.glob(f"{LOG_FILE}.*"):  # rotated copies written before files were private
                with contextlib.suppress(OSError):
                    old.chmod(0o600)
        except OSError as exc:
            logging.getLogger(__name__).warning("no log file in %s: %s", log_dir, exc)
            log_file = None
    return log_file
