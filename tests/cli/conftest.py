"""The CLI tests drive a running dream: the ``dreams`` fixture of the viewer tests, shared from there."""

from tests.web.conftest import dreams  # noqa: F401
