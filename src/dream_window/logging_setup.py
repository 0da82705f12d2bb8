"""Logging: rich console output plus a rotating log file under the home directory."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

console = Console(stderr=True)


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
            log_file = log_dir / "dream-window.log"
            fh = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
            )
            fh.setLevel(logging.DEBUG)
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
            root.addHandler(fh)
        except OSError as exc:
            logging.getLogger(__name__).warning("no log file in %s: %s", log_dir, exc)
            log_file = None
    return log_file
