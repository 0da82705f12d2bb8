"""Who may talk to the control API, decided in one place.

The rules (documented for users in docs/arch/display.md):

* **Loopback bind** (127.0.0.0/8, ::1, localhost; the default): no token. Every request must carry
  a loopback ``Host`` header, which defeats DNS rebinding (a web page whose name was re-pointed at
  127.0.0.1 sends its own name as Host).
* **Any other bind** (0.0.0.0, a LAN address): every API and live request needs the token, as
  ``Authorization: Bearer <token>`` (the CLI) or the ``dw_token`` cookie (the browser; set when the
  page is opened once as ``/?token=<token>``). The token is generated into the home directory on
  first use and printed once.
* **State changes** happen only by POST. A POST (and the live WebSocket handshake) that carries an
  ``Origin`` header must come from the viewer's own origin or ``viewer.allowed_origins``; browsers
  always send Origin on those requests, so a foreign page can never drive the dream. A request with
  no Origin comes from a non-browser client (curl, the CLI, Rainmeter) and is allowed: on loopback
  it is a local program, elsewhere it has already shown the token.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dream_window.errors import ConfigError
from dream_window.user_dirs import home_dir

log = logging.getLogger(__name__)

TOKEN_FILE = "control-token"
COOKIE = "dw_token"
# Requests to the control API are tiny; anything bigger is refused before it is read.
MAX_BODY_BYTES = 16 * 1024


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost" (what a bind or a Host header names)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name part of a Host header: ``127.0.0.1:8765`` → ``127.0.0.1``, ``[::1]:80`` → ``::1``."""
    h = host_header.strip()
    if h.startswith("["):
        return h[1:].split("]", 1)[0]
    if h.count(":") == 1:
        return h.split(":", 1)[0]
    return h


def token_path() -> Path:
    return home_dir() / TOKEN_FILE


def read_token() -> str | None:
    """The control token when one has been generated (the CLI sends it when present)."""
    try:
        token = token_path().read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def ensure_token() -> tuple[str, bool]:
    """The control token, generating it (owner-only file) on first use. Returns (token, created)."""
    existing = read_token()
    if existing:
        return existing, False
    token = secrets.token_urlsafe(32)
    path = token_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # (a file where the folder should be raises FileExistsError here)
        raise ConfigError(
            f"cannot make the folder {path.parent} for the control token: {exc.strerror or exc}"
        ) from exc
    # The token is written whole into a private file beside it, then linked into place: link never
    # replaces a file, so a token another process wrote is never clobbered, and the name only ever
    # shows a complete token (two first starts at once: the loser reads the winner's token, never
    # an empty file the winner has made but not yet written).
    try:
        # Beside the token: a link cannot cross filesystems, and the system's temp folder may be
        # on another one than the home folder.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{TOKEN_FILE}.", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write the control token to {path}: {exc.strerror or exc}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:  # mkstemp: 0600, never readable by others
            fh.write(token + "\n")
        os.link(tmp, path)
    except FileExistsError:
        again = read_token()
        if again:
            return again, False
        raise ConfigError(
            f"control token file {path} exists but is empty; delete it to make a new one"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot write the control token to {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):  # a leftover private file is harmless; no reason to fail
            tmp.unlink()
    return token, True


@dataclass(frozen=True)
class AccessPolicy:
    """The decisions the middleware makes, free of aiohttp so they are easy to read and test."""

    token: str | None  # None: no token required (loopback bind)
    allowed_origins: frozenset[str] = field(default_factory=frozenset)

    @property
    def requires_token(self) -> bool:
        return self.token is not None

    def host_ok(self, host_header: str | None) -> bool:
        if self.requires_token:
            return True  # off loopback the token is the guard; Host may be any LAN name
        return bool(host_header) and is_loopback(host_name(host_header or ""))

    def token_ok(self, *, authorization: str | None, cookie: str | None) -> bool:
        if self.token is None:
            return True
        offered = None
        if authorization and authorization.lower().startswith("bearer "):
            offered = authorization[7:].strip()
        elif cookie:
            offered = cookie
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def origin_ok(self, origin: str | None, *, own_origin: str, sec_fetch_site: str | None = None) -> bool:
        if origin is None:
            # No Origin: not a browser, unless the browser says the request is cross-site.
            return sec_fetch_site not in ("cross-site", "same-site")
        origin = origin.rstrip("/").lower()
        return origin == own_origin.lower() or origin in self.allowed_origins


def make_policy(host: str, allowed_origins: list[str]) -> tuple[AccessPolicy, bool]:
    """The policy for a viewer bound to ``host``. Returns (policy, token_was_created)."""
    origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
    if is_loopback(host):
        return AccessPolicy(token=None, allowed_origins=origins), False
    token, created = ensure_token()
    return AccessPolicy(token=token, allowed_origins=origins), created
