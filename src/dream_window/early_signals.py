"""Ctrl-C and SIGTERM from the first instant of the process, before the dream's own handlers.

Importing the CLI takes most of a second (aiohttp, PIL, numpy, the backends). Python's defaults
would turn a signal in that time into a KeyboardInterrupt traceback (SIGINT) or a kill by the
default action (SIGTERM), so ``__main__`` installs these handlers first, from the standard library
alone (this module imports nothing else), and imports the rest after. A signal before the dream
runs exits quietly with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM); once the dream
runs, ``app.run_dream`` installs its own handlers, which stop the dream cleanly with exit 0.

The handler raises ``SystemExit`` where the program happens to be. When that is inside a weakref
callback or a ``__del__`` (the import system runs one as each module lock is dropped), Python
cannot raise it there: it prints "Exception ignored in ..." with a traceback and carries on, and
the signal would be lost. So the signal is also remembered: the hook for such unraisable exits
stays quiet about ours, and :func:`exit_if_signalled` (after the imports) and ``run_dream`` (as its
own handlers go in) act on a signal that did not get through.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

_received: int | None = None


class EarlyExit(SystemExit):
    """The exit a signal asked for before the dream's own handlers were in."""


def _exit_early(signum: int, frame: FrameType | None) -> None:
    global _received
    code = 128 + signum
    if _received is not None:  # a second signal while the first one unwinds: do not wait for the cleanup
        os._exit(code)
    _received = signum
    # SystemExit, not KeyboardInterrupt: no traceback, and `finally` blocks (the output-folder lock,
    # the backend) still run. Nothing catches it on the way: the CLI catches Exception only.
    raise EarlyExit(code)


def _unraisable(unraisable: Any, *, default: Any = sys.unraisablehook) -> None:
    # Our exit, raised inside a weakref callback or __del__, where Python cannot raise it: stay
    # quiet (it is remembered in _received), and let everything else be reported as usual.
    if isinstance(unraisable.exc_value, EarlyExit):
        return
    default(unraisable)


def install() -> None:
    """SIGINT and SIGTERM exit quietly with 128 + their number (see the module docstring). A signal
    the parent told us to ignore (a shell's background job ignores SIGINT) stays ignored."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _exit_early)
    sys.unraisablehook = _unraisable


def received() -> int | None:
    """The signal that arrived before the dream's own handlers went in, if one did."""
    return _received


def exit_if_signalled() -> None:
    """Exit now if a signal arrived and its exit was swallowed on the way (see the docstring)."""
    if _received is not None:
        raise EarlyExit(128 + _received)
