"""Game detection: names, the default list, library folders, on real processes and on a fake table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from dream_window.monitor.detector import CheckContext, Condition
from dream_window.monitor.games import DEFAULT_GAMES, GameScanner, normalise_path
from tests.monitor.conftest import stop_process

LIBS = ["steamapps/common", "Epic Games", "GOG Galaxy/Games"]


@pytest.mark.parametrize(
    ("name", "exe", "expected"),
    [
        ("EldenRing.exe", None, "eldenring.exe"),  # case-insensitive
        ("mygame.exe", None, "mygame.exe"),  # the user's own list
        ("cyberpunk2077.e", None, "cyberpunk2077.exe"),  # Linux cut the name at 15 characters
        ("notepad.exe", r"C:\Windows\notepad.exe", None),
        ("Game.exe", r"D:\SteamLibrary\steamapps\common\Hades\x64\Game.exe", "game.exe"),  # library folder
        ("hades", "/home/me/.steam/steam/steamapps/common/Hades/hades", "hades"),
        ("x.exe", r"C:\Program Files\Epic Games\Fortnite\x.exe", "x.exe"),
        (
            "EpicGamesLauncher.exe",
            r"C:\Program Files (x86)\Epic Games\Launcher\Portal\EpicGamesLauncher.exe",
            None,
        ),
        ("helper.exe", r"C:\Program Files\Epic Games\Launcher\Engine\helper.exe", None),  # launcher folder
        ("steamwebhelper.exe", r"C:\Steam\steamapps\common\x\steamwebhelper.exe", None),  # helper name
        ("tool.exe", r"C:\Steam\steamapps\common\Steamworks Shared\tool.exe", None),
        ("witcher.exe", r"C:\GOG Galaxy\Games\The Witcher\witcher.exe", "witcher.exe"),
        ("galaxyclient.exe", r"C:\GOG Galaxy\GalaxyClient.exe", None),  # the client, not a game
        ("commonstuff", "/opt/steamapps/commonstuff/x", None),  # folder names match whole
        (None, None, None),  # access denied to both
        ("ignored.exe", None, None),  # the user's ignore list wins
    ],
)
def test_match(name: str | None, exe: str | None, expected: str | None) -> None:
    s = GameScanner(known_games=["MyGame.exe", "ignored.exe"], library_paths=LIBS, ignore=["Ignored.exe"])
    assert s.match(name, exe) == expected


def test_normalise_path() -> None:
    assert normalise_path(r"C:\\Games\\X.exe") == "/c:/games/x.exe/"
    assert normalise_path("steamapps/common/") == "/steamapps/common/"


def test_default_list_can_be_turned_off() -> None:
    assert GameScanner(use_default_games=False).match("eldenring.exe", None) is None
    assert "eldenring.exe" in DEFAULT_GAMES


def test_asks_psutil_only_for_what_the_rules_use() -> None:
    asked: list[Sequence[str]] = []

    def table(attrs: Sequence[str]) -> Iterable[Mapping[str, Any]]:
        asked.append(tuple(attrs))
        return [{"name": "bash"}, {"name": None}, {"name": "EldenRing.exe"}]  # None: access denied

    assert GameScanner(processes=table).scan() == ["eldenring.exe"]
    GameScanner(processes=table, library_paths=LIBS).scan()
    assert asked == [("name",), ("name", "exe")]


def test_reason_sticks_to_the_first_game_while_it_runs() -> None:
    running = [{"name": "eldenring.exe"}]
    s = GameScanner(processes=lambda attrs: list(running))
    ctx = CheckContext(now=0)
    assert s.check(ctx).reason == "game: eldenring.exe"
    running.append({"name": "cs2.exe"})  # sorts first, but elden ring is still running
    assert s.check(ctx).reason == "game: eldenring.exe"
    running.pop(0)
    assert s.check(ctx).reason == "game: cs2.exe"
    running.clear()
    assert s.check(ctx).condition is Condition.CLEAR


def test_real_process_with_a_default_game_name_is_found_and_its_exit_clears(game_process: Any) -> None:
    scanner = GameScanner(library_paths=LIBS)
    assert scanner.check(CheckContext(now=0)).condition is Condition.CLEAR
    proc = game_process("eldenring.exe")
    reading = scanner.check(CheckContext(now=1))
    assert reading.condition is Condition.ACTIVE and reading.reason == "game: eldenring.exe"
    stop_process(proc)
    assert scanner.check(CheckContext(now=2)).condition is Condition.CLEAR


def test_real_process_in_a_library_folder_is_found_by_path(game_process: Any, tmp_path: Path) -> None:
    folder = tmp_path / "SteamLibrary" / "steamapps" / "common" / "Hollow Knight"
    game_process("hollow_knight.x86_64", folder)
    assert GameScanner(library_paths=LIBS, use_default_games=False).scan() == ["hollow_knight.x86_64"]
    assert GameScanner(library_paths=[], use_default_games=False).scan() == []


def test_real_process_from_known_games_with_a_long_name(game_process: Any) -> None:
    game_process("averyverylonggamename.exe")  # psutil restores the full name from the command line
    assert GameScanner(known_games=["AVeryVeryLongGameName.exe"]).scan() == ["averyverylonggamename.exe"]


@pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="no Linux /proc here")
def test_proc_fast_path_agrees_with_psutil_on_the_real_process_table(game_process: Any) -> None:
    import psutil

    from dream_window.monitor.games import proc_processes, psutil_processes

    game_process("averyverylonggamename.exe")  # cut to 15 by the kernel, completed by both
    game_process("eldenring.exe")
    ours = {p["name"]: p["exe"] for p in proc_processes(["name", "exe"])}
    theirs = {p["name"]: p["exe"] for p in psutil_processes(["name", "exe"])}
    assert {"averyverylonggamename.exe", "eldenring.exe"} <= set(ours)
    # other processes come and go between the two scans (a shared machine); ours must agree exactly
    stable = {psutil.Process().name(), "averyverylonggamename.exe", "eldenring.exe"}
    for name in stable:
        assert ours[name] == theirs[name], name
    assert set(ours) & set(theirs) >= stable


def test_proc_fast_path_skips_what_it_cannot_read(tmp_path: Path) -> None:
    from dream_window.monitor.games import proc_processes

    fake = tmp_path / "proc"
    (fake / "12").mkdir(parents=True)
    (fake / "12" / "comm").write_bytes(b"eldenring.exe\n")
    (fake / "34").mkdir()  # exited between the directory listing and the read: no comm
    (fake / "self").mkdir()  # not a pid
    (fake / "56").mkdir()
    (fake / "56" / "comm").write_bytes(b"cyberpunk2077.e\n")
    (fake / "56" / "cmdline").write_bytes(b"C:\\\\Games\\\\Cyberpunk2077.exe\0--launcher\0")
    got = sorted(proc_processes(["name", "exe"], proc=str(fake)), key=lambda p: p["name"])
    # Wine's Windows path is not a POSIX basename: the cut name stays (and still matches, see test_match)
    assert got == [{"name": "cyberpunk2077.e", "exe": None}, {"name": "eldenring.exe", "exe": None}]
