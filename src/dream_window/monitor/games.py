"""Is a game running? A psutil process scan by executable name and by game-library folder.

Cost is what matters here: the scan runs every couple of seconds for as long as the dream runs.
Only the attributes a rule uses are read (``name``; ``exe`` only when library folders are
configured). psutil is the portable source; on Linux the same two values are read straight from
``/proc``, several times cheaper than psutil's ``name()`` (see ``bench/monitor.py``). Processes
that exit mid-scan are skipped; those we may not read come back as ``None`` and are skipped
quietly.

Name matching is case-insensitive. Linux keeps only 15 characters of a process name (the kernel's
``comm``), and Proton/Wine games show their Windows name there, so a 15-character name also
matches a known game that starts with it ("cyberpunk2077.e" → "cyberpunk2077.exe").
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dream_window.monitor.detector import CheckContext, Reading

# Popular game executables (lowercase). Launchers and stores are *not* here: they sit in the tray
# all day. Users add their own with game_detection.known_games.
DEFAULT_GAMES: frozenset[str] = frozenset(
    {
        "eldenring.exe",
        "nightreign.exe",
        "sekiro.exe",
        "darksoulsiii.exe",
        "armoredcore6.exe",
        "cyberpunk2077.exe",
        "witcher3.exe",
        "bg3.exe",
        "bg3_dx11.exe",
        "starfield.exe",
        "gta5.exe",
        "gta5_enhanced.exe",
        "rdr2.exe",
        "hogwartslegacy.exe",
        "re4.exe",
        "cs2.exe",
        "csgo.exe",
        "valorant-win64-shipping.exe",
        "r5apex.exe",
        "r5apex_dx12.exe",
        "overwatch.exe",
        "dota2.exe",
        "league of legends.exe",
        "rocketleague.exe",
        "destiny2.exe",
        "fortniteclient-win64-shipping.exe",
        "tslgame.exe",
        "cod.exe",
        "modernwarfare.exe",
        "bf2042.exe",
        "bf6.exe",
        "helldivers2.exe",
        "palworld-win64-shipping.exe",
        "marvel-win64-shipping.exe",
        "deadbydaylight-win64-shipping.exe",
        "rainbowsix.exe",
        "escapefromtarkov.exe",
        "rustclient.exe",
        "arma3_x64.exe",
        "dayz_x64.exe",
        "monsterhunterworld.exe",
        "monsterhunterwilds.exe",
        "forzahorizon5.exe",
        "flightsimulator.exe",
        "flightsimulator2024.exe",
        "ffxiv_dx11.exe",
        "wow.exe",
        "diablo iv.exe",
        "pathofexile_x64.exe",
        "pathofexilesteam.exe",
        "pathofexile.exe",
        "genshinimpact.exe",
        "starrail.exe",
        "zenlesszonezero.exe",
        "minecraft.windows.exe",
        "terraria.exe",
        "stardew valley.exe",
        "factorio.exe",
        "cities2.exe",
        "witcher3",
        "factorio",
        "dota2",
        "cs2",
    }
)

# Inside a library folder, these are tools that run all day, not games.
_LIBRARY_EXCLUDES: tuple[str, ...] = (
    "/epic games/launcher/",
    "/epic games/epic online services/",
    "/steamapps/common/steamworks shared/",
    "/steamapps/common/steam controller configs/",
)

# Helper processes that may live in a library folder or carry a game-like name.
NOT_GAMES: frozenset[str] = frozenset(
    {
        "epicgameslauncher.exe",
        "epicwebhelper.exe",
        "epiconlineservicesuserhelper.exe",
        "eosoverlayrenderer-win64-shipping.exe",
        "unrealcefsubprocess.exe",
        "crashreportclient.exe",
        "steam.exe",
        "steamwebhelper.exe",
        "steamservice.exe",
        "gameoverlayui.exe",
        "galaxyclient.exe",
        "galaxyclient helper.exe",
        "gogalaxynotifications.exe",
        "easyanticheat.exe",
        "battleye.exe",
        "beservice.exe",
        "unitycrashhandler64.exe",
        "unitycrashhandler32.exe",
    }
)

# Linux: TASK_COMM_LEN - 1. A name this long may have been cut.
_COMM_LEN = 15

ProcessSource = Callable[[Sequence[str]], Iterable[Mapping[str, Any]]]


def psutil_processes(attrs: Sequence[str]) -> Iterable[Mapping[str, Any]]:
    """Every process as a dict holding only ``attrs``; ``None`` where access is denied."""
    import psutil

    for proc in psutil.process_iter(list(attrs), ad_value=None):
        yield proc.info


def proc_processes(attrs: Sequence[str], proc: str = "/proc") -> Iterable[Mapping[str, Any]]:
    """Linux fast path: the same ``name``/``exe`` psutil gives, read straight from ``/proc``.

    psutil's ``name()`` parses all of ``/proc/<pid>/stat`` through several layers (~80 µs a
    process); reading ``comm`` is ~10 µs. Names cut at 15 characters are completed from the
    command line exactly as psutil does it.
    """
    want_exe = "exe" in attrs
    try:
        entries = os.scandir(proc)
    except OSError:
        return
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            base = f"{proc}/{entry.name}"
            try:
                with open(f"{base}/comm", "rb") as f:
                    name = f.read().rstrip(b"\n").decode("utf-8", "replace")
            except OSError:  # exited since scandir, or hidden from us
                continue
            if len(name) == _COMM_LEN:
                name = _full_name(base, name)
            info: dict[str, Any] = {"name": name}
            if want_exe:
                try:
                    info["exe"] = os.readlink(f"{base}/exe")
                except OSError:  # another user's process, a kernel thread, or gone
                    info["exe"] = None
            yield info


def _full_name(base: str, name: str) -> str:
    try:
        with open(f"{base}/cmdline", "rb") as f:
            first = f.read().split(b"\0", 1)[0].decode("utf-8", "replace")
    except OSError:
        return name
    full = os.path.basename(first)
    return full if full.startswith(name) else name


def default_process_source() -> ProcessSource:
    return (
        proc_processes
        if sys.platform.startswith("linux") and os.path.isdir("/proc/self")
        else psutil_processes
    )


def normalise_path(path: str) -> str:
    """Lowercase, forward slashes, wrapped in slashes: ``/c:/games/steamapps/common/x/x.exe/``."""
    p = re.sub(r"[\\/]+", "/", path.strip()).lower()
    return "/" + p.strip("/") + "/"


class GameScanner:
    """Finds running games. Blocking (reads the process table): run it in a thread."""

    name = "games"

    def __init__(
        self,
        *,
        known_games: Iterable[str] = (),
        use_default_games: bool = True,
        library_paths: Iterable[str] = (),
        ignore: Iterable[str] = (),
        processes: ProcessSource | None = None,
    ) -> None:
        names = {g.strip().lower() for g in known_games if g.strip()}
        if use_default_games:
            names |= DEFAULT_GAMES
        self.ignore = NOT_GAMES | {g.strip().lower() for g in ignore if g.strip()}
        self.names = frozenset(names - self.ignore)
        # Linux cuts names at 15 characters: index the cut forms of the longer names.
        self._truncated = {n[:_COMM_LEN]: n for n in self.names if len(n) > _COMM_LEN}
        self.library_paths = tuple(normalise_path(p) for p in library_paths if p.strip())
        self._processes = processes or default_process_source()
        self._attrs: tuple[str, ...] = ("name", "exe") if self.library_paths else ("name",)
        self._current: str | None = None

    def describe(self) -> str:
        return f"{len(self.names)} game names, {len(self.library_paths)} library folders"

    def match(self, name: str | None, exe: str | None) -> str | None:
        """The game this process is, by name or folder, or None. ``name``/``exe`` may be None (denied)."""
        lname = name.lower() if name else ""
        if lname in self.ignore:
            return None
        if lname in self.names:
            return lname
        if len(lname) == _COMM_LEN and lname in self._truncated:
            return self._truncated[lname]
        if exe and self.library_paths:
            path = normalise_path(exe)
            if any(lib in path for lib in self.library_paths) and not any(
                x in path for x in _LIBRARY_EXCLUDES
            ):
                base = path.rstrip("/").rsplit("/", 1)[-1]
                return base if base not in self.ignore else None
        return None

    def scan(self) -> list[str]:
        """The running games, sorted and without duplicates."""
        found: set[str] = set()
        for info in self._processes(self._attrs):
            game = self.match(info.get("name"), info.get("exe"))
            if game is not None:
                found.add(game)
        return sorted(found)

    def check(self, ctx: CheckContext) -> Reading:
        games = self.scan()
        if not games:
            self._current = None
            return Reading.clear("no game running")
        # Keep naming the same game while it runs, so the pause reason does not hop between games.
        if self._current not in games:
            self._current = games[0]
        return Reading.active(f"game: {self._current}", f"running: {', '.join(games)}")

    def close(self) -> None:
        pass
