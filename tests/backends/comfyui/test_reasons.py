"""Why a request did not get through, in words: aiohttp's own exceptions, as it raises them."""

from __future__ import annotations

import errno
import socket

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from dream_window.backends.comfyui.reasons import plain_reason


def _connector_error(os_error: OSError) -> aiohttp.ClientConnectorError:
    key = ConnectionKey("127.0.0.1", 8188, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, os_error)


def test_refused_says_nothing_is_listening() -> None:
    exc = _connector_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"))
    assert (
        plain_reason(exc)
        == "connection refused: nothing is listening on 127.0.0.1:8188 (is ComfyUI started?)"
    )


def test_an_unknown_host_and_a_silent_one() -> None:
    assert plain_reason(_connector_error(socket.gaierror(-2, "Name or service not known"))) == (
        "host '127.0.0.1' not found"
    )
    assert plain_reason(_connector_error(TimeoutError()), 3.0) == "no answer from 127.0.0.1:8188 within 3 s"


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (
            aiohttp.ClientOSError(None, "Can not write request body for http://127.0.0.1:8188/prompt"),
            "the connection broke mid-request: can not write request body (restarting?)",
        ),
        (
            aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
            "the connection broke mid-request: connection reset by peer (restarting?)",
        ),
    ],
)
def test_a_connection_broken_mid_request_says_so_without_errno_noise(exc: BaseException, said: str) -> None:
    reason = plain_reason(exc)
    assert reason == said
    assert "[Errno" not in reason and "http://" not in reason


def test_a_server_that_hung_up_and_anything_else() -> None:
    assert plain_reason(aiohttp.ServerDisconnectedError()) == "the server closed the connection (restarting?)"
    assert plain_reason(TimeoutError()) == "no answer in time"
    assert plain_reason(ValueError("odd")) == "odd"
    assert plain_reason(ValueError()) == "ValueError"
