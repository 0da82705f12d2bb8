"""Every error a Dream Window user can meet.

The tree is shallow on purpose; catch the root to handle "anything of ours":

    DreamWindowError
    ├── ConfigError              bad config file, bad CLI value (exit code 2)
    │   ├── AlreadyRunning       another dream-window holds this output folder; names its pid and viewer
    │   └── MissingExtra         asked for something an optional extra provides (mp4 export without
    │                            ``dream-window[export]``); says what to install
    ├── LifecycleError           an illegal state transition (running → running, stopped → paused ...)
    ├── BackendError             a generation backend failed to produce a frame
    │   ├── ComfyUIError         anything that went wrong talking to ComfyUI
    │   │   ├── ComfyUIUnavailable   connection refused / reset / 5xx after retries
    │   │   ├── ComfyUITimeout       a prompt ran past its time limit (it is interrupted)
    │   │   ├── WorkflowRejected     POST /prompt answered 400; carries the server's node_errors
    │   │   ├── ModelUnavailable     the configured model is not on the server, or does not load
    │   │   ├── ExecutionFailed      the prompt ran and failed (execution_error) or was interrupted
    │   │   └── ComfyUIProtocolError the server answered outside the protocol: a wrong shape, an
    │   │                            oversized body, an unsafe file name ("../", an absolute path)
    │   └── ModelLoadError       local model weights (VAE, CLIP) missing or unloadable
    ├── CacheError               the frame cache database or its images (``disk_full``: not damage)
    ├── AutostartError           starting at logon could not be set up: schtasks / systemctl /
    │                            launchctl missing or refusing; carries the command and its output
    └── FrameWriteError          a frame or status file could not be written, even after retries
                                 (``disk_full``: ENOSPC / EDQUOT; it passes when space is freed)

Foreign exceptions (aiohttp, sqlite3, OSError, torch) are mapped into this tree in the module
that calls the foreign library, with ``raise ... from exc``; nothing above that module sees them.
"""

from __future__ import annotations

from typing import Any


class DreamWindowError(Exception):
    """Root of every error Dream Window raises on purpose."""


class ConfigError(DreamWindowError):
    """The configuration (file, CLI option or environment) is invalid.

    ``problems`` holds one human-readable line per problem, each naming the key, the bad value
    and what is allowed.
    """

    def __init__(self, message: str, *, problems: list[str] | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]
        self.path = path


class AlreadyRunning(ConfigError):
    """Another dream-window holds the lock on this output folder. ``pid`` and ``url`` (its viewer)
    are None when it has not said them yet; a usage error (exit 2): stop it or choose another folder."""

    def __init__(
        self, message: str, *, output_dir: str, pid: int | None = None, url: str | None = None
    ) -> None:
        super().__init__(message)
        self.output_dir = output_dir
        self.pid = pid
        self.url = url


class MissingExtra(ConfigError):
    """What was asked for needs an optional extra that is not installed (exit 2: the fix is an
    install, or asking for something else). ``extra`` names it, e.g. ``export``."""

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class LifecycleError(DreamWindowError):
    """An illegal lifecycle transition was requested."""


class BackendError(DreamWindowError):
    """A generation backend could not produce what was asked."""


class ComfyUIError(BackendError):
    """Something went wrong talking to a ComfyUI server."""

    def __init__(self, message: str, *, server: str | None = None) -> None:
        super().__init__(message)
        self.server = server


class ComfyUIUnavailable(ComfyUIError):
    """The server could not be reached (refused, reset, 5xx) even after retries. ``reason``: why,
    in plain words ("connection refused: nothing is listening on 127.0.0.1:8188 ...")."""

    def __init__(self, message: str, *, server: str | None = None, reason: str | None = None) -> None:
        super().__init__(message, server=server)
        self.reason = reason or message


class ComfyUITimeout(ComfyUIError):
    """A prompt did not finish in time; it has been interrupted on the server."""

    def __init__(self, message: str, *, server: str | None = None, prompt_id: str | None = None) -> None:
        super().__init__(message, server=server)
        self.prompt_id = prompt_id


class WorkflowRejected(ComfyUIError):
    """POST /prompt was refused (HTTP 400). ``node_errors`` is the server's structure, verbatim."""

    def __init__(
        self,
        message: str,
        *,
        server: str | None = None,
        error: dict[str, Any] | None = None,
        node_errors: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, server=server)
        self.error = error or {}
        self.node_errors = node_errors or {}


class ModelUnavailable(ComfyUIError):
    """The configured model file is not on the server, or the server cannot load it (a truncated
    download). A setup problem, not a passing one: with ``backend: comfyui`` the start exits 2."""


class ExecutionFailed(ComfyUIError):
    """The prompt was accepted, then failed while running (execution_error) or was interrupted."""

    def __init__(
        self,
        message: str,
        *,
        server: str | None = None,
        prompt_id: str | None = None,
        node_id: str | None = None,
        node_type: str | None = None,
        interrupted: bool = False,
    ) -> None:
        super().__init__(message, server=server)
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.interrupted = interrupted


class ComfyUIProtocolError(ComfyUIError):
    """The server's answer is not ComfyUI's protocol: a body of the wrong shape or too large, a
    WebSocket frame that does not parse, a file name that would leave the server's folders. Nothing
    in it is used; the job fails like any other server error."""


class ModelLoadError(BackendError):
    """Local model weights are missing, unreadable or of the wrong shape."""


class CacheError(DreamWindowError):
    """The frame cache (SQLite index or image files) failed. ``disk_full``: the disk (or the
    user's quota) is full; nothing is damaged and the cache works again once space is freed."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


class AutostartError(DreamWindowError):
    """Registering (or removing) the start at logon failed. ``command`` is the argv that failed
    (empty when the file could not be written), ``output`` what it printed."""

    def __init__(self, message: str, *, command: list[str] | None = None, output: str = "") -> None:
        super().__init__(message)
        self.command = command or []
        self.output = output


class FrameWriteError(DreamWindowError):
    """A frame or status file could not be written, even after retries. ``path``: the file;
    ``reason``: why, in a few words ("disk full", "Permission denied"); ``disk_full``: the disk or
    quota is full (ENOSPC, EDQUOT), a condition that passes when space is freed."""

    def __init__(
        self, message: str, *, path: str | None = None, reason: str | None = None, disk_full: bool = False
    ) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason or ("disk full" if disk_full else message)
        self.disk_full = disk_full
