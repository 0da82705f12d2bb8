"""A fake ComfyUI server for tests and benchmarks, faithful to recordings of ComfyUI v0.33.0.

Real aiohttp on a loopback port, backed by Dream Window's built-in engine. It checks what clients
send against the recorded node schemas and answers in the recorded shapes, with its own
implementation of validation and of the wire format (never the client's), so a mistake shared by
the client and the fake cannot hide. ``python -m comfyui_fake --port 8189`` runs one by hand.

``running_comfy_server()`` starts one in-process (an async context manager); ``ComfyTestServer``
exposes fault injection, a simulated model load (``model_load_delay``, counted in
``server.stats.model_loads``) and a record of the requests it received (``server.seen("/interrupt")``).
"""

from comfyui_fake.schemas import recorded_object_info
from comfyui_fake.server import ComfyTestServer, RequestRecord, running_comfy_server

__all__ = ["ComfyTestServer", "RequestRecord", "recorded_object_info", "running_comfy_server"]
