"""The browser viewer and the JSON control API, served by ``dream-window run``.

Module map: ``server`` (the aiohttp app, static files, lifecycle), ``api`` (control routes and the
security middleware), ``security`` (token, Host and Origin rules), ``live`` (WebSocket fan-out of
controller events), ``cli`` (``dream-window pause|resume|skip|prompt``), ``static/`` (the page).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dream_window.errors import DreamWindowError

if TYPE_CHECKING:
    from dream_window.app import Services
    from dream_window.config import DreamConfig
    from dream_window.dream.controller import DreamController

log = logging.getLogger(__name__)


async def start_viewer(config: DreamConfig, controller: DreamController, services: Services) -> Any:
    """Start the viewer when ``viewer.enabled``; returns the running ViewerServer (or None).

    A viewer that cannot start (port taken) is logged as an error and the dream goes on without
    it: frames still reach the output folder and the Rainmeter skin.
    """
    if not config.viewer.enabled:
        return None
    from dream_window.web.security import token_path
    from dream_window.web.server import ViewerServer

    server = ViewerServer(controller, config.viewer)
    try:
        await server.start()
    except DreamWindowError as exc:
        log.error("%s", exc)
        failure = {"url": None, "error": str(exc)}
        controller.status_providers["viewer"] = lambda: failure
        return None
    services.closers.append(server.close)
    controller.status_providers["viewer"] = server.describe
    if server.policy.requires_token:
        if server.token_created:
            # Printed once, when made; afterwards it is in the token file for whoever may read it.
            log.warning(
                "viewer: control token created in %s; open %s?token=%s once in your browser",
                token_path(),
                server.url,
                server.policy.token,
            )
        else:
            log.info("viewer: a control token is required (in %s)", token_path())
    log.info("viewer: %s", server.url)
    return server
