"""Dream Window's per-user folders: where the user's config, cache, logs and runtime files live.

One frozen value, :class:`UserDirs`, built by :func:`user_dirs` for a platform string
(``sys.platform`` by default; tests pass the others). Three cases, in this order:

``DREAM_WINDOW_HOME`` is set
    Everything goes under it: config and data in the folder itself, ``cache/``, ``logs/`` and
    ``run/`` inside. Tests and benches point it at a temp folder; a user can move everything.
``~/.dream-window`` exists
    Users of the first versions keep the folder they have, with the same layout.
Otherwise
    Each OS's convention, from platformdirs (app name ``dream-window``, no author folder)::

                 Linux (XDG)                      macOS                                        Windows
        config   ~/.config/dream-window           ~/Library/Application Support/dream-window   %LOCALAPPDATA%\\dream-window
        data     ~/.local/share/dream-window      ~/Library/Application Support/dream-window   %LOCALAPPDATA%\\dream-window
        cache    ~/.cache/dream-window            ~/Library/Caches/dream-window                %LOCALAPPDATA%\\dream-window\\Cache
        logs     ~/.local/state/dream-window/log  ~/Library/Logs/dream-window                  %LOCALAPPDATA%\\dream-window\\Logs
        runtime  $XDG_RUNTIME_DIR/dream-window    ~/Library/Caches/TemporaryItems/dream-window %LOCALAPPDATA%\\Temp\\dream-window

    The ``XDG_*`` variables move the Linux (and macOS) ones, as platformdirs reads them.

``data`` is the *home folder* (the control token, the registry of running instances). Windows
gets the local, not the roaming, AppData: frames and caches must not follow a user between
machines. Nothing here creates a folder; the part that writes into one does.

platformdirs reads the process environment itself (``HOME``, ``XDG_*``, and on Windows the known
folders, which its ``WIN_PD_OVERRIDE_*`` variables can set), so that is what tests set; only the
platform is a parameter.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from platformdirs.api import PlatformDirsABC
from platformdirs.macos import MacOS
from platformdirs.unix import Unix
from platformdirs.windows import Windows

APP_NAME = "dream-window"
HOME_ENV = "DREAM_WINDOW_HOME"
LEGACY_HOME = ".dream-window"
# The user's config file, in the config folder: what `dream-window init` writes with no PATH.
CONFIG_FILE = "config.yaml"
# The user config's output folder, in the data folder (see user_config_text in config.py).
OUTPUT_FOLDER = "output"


@dataclass(frozen=True)
class UserDirs:
    """The per-user folders (see the module docstring for where each one is)."""

    config: Path
    data: Path
    cache: Path
    logs: Path
    runtime: Path

    @property
    def config_file(self) -> Path:
        """The user's config file: ``dream-window init`` writes it, commands read it when there is
        no ./config.yaml."""
        return self.config / CONFIG_FILE

    @property
    def output(self) -> Path:
        """Where the user config sends frames, status.json and the widget files.

        In the data folder, not in Pictures: the dream rewrites a frame every few seconds and prunes
        its history, which a photo library or a synced Pictures folder (OneDrive backs it up on
        Windows) would churn on. ``dream-window export`` makes the keepsake.
        """
        return self.data / OUTPUT_FOLDER


def _under(root: Path) -> UserDirs:
    return UserDirs(config=root, data=root, cache=root / "cache", logs=root / "logs", runtime=root / "run")


def _platform_dirs(platform: str) -> PlatformDirsABC:
    if platform.startswith(("win32", "cygwin")):
        return Windows(APP_NAME, appauthor=False)
    if platform == "darwin":
        return MacOS(APP_NAME, appauthor=False)
    return Unix(APP_NAME, appauthor=False)


def user_dirs(platform: str | None = None) -> UserDirs:
    """The per-user folders on ``platform`` (a ``sys.platform`` value; this machine's by default)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return _under(Path(env).expanduser())
    legacy = Path.home() / LEGACY_HOME
    if legacy.is_dir():
        return _under(legacy)
    dirs = _platform_dirs(platform or sys.platform)
    data = Path(dirs.user_data_dir)
    return UserDirs(
        config=Path(dirs.user_config_dir),
        data=data,
        cache=Path(dirs.user_cache_dir),
        logs=Path(dirs.user_log_dir),
        runtime=_runtime(dirs, data),
    )


def _runtime(dirs: PlatformDirsABC, data: Path) -> Path:
    # On Linux an unset or unsafe XDG_RUNTIME_DIR (a cron job, an ssh login) makes platformdirs warn
    # and fall back to a temp folder, or raise when even that is unsafe. Nothing reads the runtime
    # folder on every start, so a command must not print that warning: fall back quietly instead.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Path(dirs.user_runtime_dir)
    except (OSError, RuntimeError):
        return data / "run"


def home_dir() -> Path:
    """Dream Window's own per-user folder (the control token, the registry of running instances)."""
    return user_dirs().data
