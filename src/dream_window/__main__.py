"""``python -m dream_window``: the CLI, with Ctrl-C and SIGTERM handled from the first instant.

Importing the CLI takes most of a second (aiohttp, PIL, numpy, the backends). Python's defaults
would turn a signal in that time into a KeyboardInterrupt traceback (SIGINT) or a kill by the
default action (SIGTERM), so the handlers go in first, from the standard library alone, and the
rest is imported after. A signal before the dream runs exits quietly with 128 + the signal's number
(130 for SIGINT, 143 for SIGTERM); once the dream runs, ``app.run_dream`` installs its own
handlers, which stop the dream cleanly with exit 0.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

_stopping = False


def _exit_early(signum: int, frame: FrameType | None) -> None:
    global _stopping
    code = 128 + signum
    if _stopping:  # a second signal while the first one unwinds: do not wait for the cleanup
        os._exit(code)
    _stopping = True
    # SystemExit, not KeyboardInterrupt: no traceback, and `finally` blocks (the output-folder lock,
    # the backend) still run. Nothing catches it on the way: the CLI catches Exception only.
    raise SystemExit(code)


def install_early_signal_handlers() -> None:
    """SIGINT and SIGTERM exit quietly with 128 + their number (see the module docstring). A signal
    the parent told us to ignore (a shell's background job ignores SIGINT) stays ignored."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _exit_early)


def main() -> None:
    install_early_signal_handlers()
    from dream_window.cli import main as cli  # slow: after the handlers, on purpose

    cli()


if __name__ == "__main__":
    main()
