"""Why a request to ComfyUI did not get through, in words a user can act on.

aiohttp says "Cannot connect to host 127.0.0.1:8188 ssl:default [Connect call failed ('127.0.0.1',
8188)]"; a user needs "connection refused: nothing is listening on 127.0.0.1:8188 (is ComfyUI
started?)". The client, its WebSocket and the pool all report through :func:`plain_reason`.
"""

from __future__ import annotations

import errno
import socket

import aiohttp


def plain_reason(exc: BaseException, connect_timeout: float | None = None) -> str:
    """Why a request did not get through, in words a user can act on (aiohttp's own read
    "Cannot connect to host 127.0.0.1:8188 ssl:default [Connect call failed ...]")."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        host = f"{exc.host}:{exc.port}"
        if isinstance(err, ConnectionRefusedError) or getattr(err, "errno", None) in (
            errno.ECONNREFUSED,
            10061,  # WSAECONNREFUSED
        ):
            return f"connection refused: nothing is listening on {host} (is ComfyUI started?)"
        if isinstance(err, socket.gaierror):
            return f"host {exc.host!r} not found"
        if isinstance(err, TimeoutError):
            return f"no answer from {host}" + (f" within {connect_timeout:g} s" if connect_timeout else "")
        return f"cannot connect to {host}: {err.strerror or err}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection (restarting?)"
    if isinstance(exc, aiohttp.ClientOSError):
        # The connection broke mid-request: aiohttp reads "[Errno None] Can not write request body
        # for http://...", or "[Errno 104] Connection reset by peer".
        what = exc.strerror or str(exc)
        what = what.split(" for http", 1)[0].strip()
        return f"the connection broke mid-request: {what[:1].lower()}{what[1:]} (restarting?)"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__
