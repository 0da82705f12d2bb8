"""The browser viewer and the JSON control API, served by ``dream-window run``.

Module map: ``server`` (the aiohttp app, static files, lifecycle), ``api`` (control routes and the
security middleware), ``security`` (token, Host and Origin rules), ``live`` (WebSocket fan-out of
the dream's events), ``static/`` (the page). ``ViewerService`` is what the app registers.
"""

from __future__ import annotations

import logging

from dream_window.config import DreamConfig
from dream_window.dream.service import Dream
from dream_window.errors import DreamWindowError
from dream_window.logging_setup import CONSOLE_ONLY
from dream_window.values.check import Check
from dream_window.web.security import token_path
from dream_window.web.server import ViewerServer

log = logging.getLogger(__name__)

__all__ = ["ViewerServer", "ViewerService"]


class ViewerService:
    """The viewer as a service: served while the dream runs when ``viewer.enabled``.

    A viewer that cannot start (port taken) is logged as an error and shown in status; the dream
    goes on without it: frames still reach the output folder and the Rainmeter skin.
    """

    name = "viewer"

    def __init__(self, config: DreamConfig) -> None:
        self.config = config.viewer
        self.server: ViewerServer | None = None
        self._error: str | None = None

    async def start(self, dream: Dream) -> None:
        if not self.config.enabled:
            return
        server = ViewerServer(dream, self.config)
        try:
            await server.start()
        except DreamWindowError as exc:
            log.error("%s", exc)
            self._error = str(exc)
            return
        self.server = server
        if server.policy.requires_token:
            if server.token_created:
                # Shown once, when made, on the console only: the log file is no place for a secret.
                # Afterwards it is in the owner-only token file for whoever may read it.
                log.warning(
                    "viewer: control token created in %s; open %s?token=%s once in your browser",
                    token_path(),
                    server.url,
                    server.policy.token,
                    extra=CONSOLE_ONLY,
                )
                log.debug(  # the log file's record of it (the console has just said it)
                    "viewer: control token created in %s (the URL to open is on the console)", token_path()
                )
            else:
                log.info("viewer: a control token is required (in %s)", token_path())
        log.info("viewer: %s", server.url)

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def describe(self) -> dict[str, object] | None:
        if self.server is not None:
            return self.server.describe()
        if self._error is not None:
            return {"url": None, "error": self._error}
        return None

    async def doctor_checks(self) -> list[Check]:
        return []

    async def free_memory(self) -> None:
        return None
