"""Test helpers that ship with the package: a ComfyUI-protocol server backed by the built-in engine.

``running_comfy_server()`` starts one in-process (an async context manager); ``ComfyTestServer``
exposes fault injection and a record of the requests it received (``server.seen("/interrupt")``).
"""

from dream_window.testing.comfy_server import (
    ComfyTestServer,
    RequestRecord,
    recorded_object_info,
    running_comfy_server,
)

__all__ = ["ComfyTestServer", "RequestRecord", "recorded_object_info", "running_comfy_server"]
