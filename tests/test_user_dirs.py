"""Per-user folders: each OS's convention (platformdirs, driven here through the environment it
reads), the DREAM_WINDOW_HOME override and the legacy ~/.dream-window."""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import pytest

from dream_window.user_dirs import UserDirs, home_dir, user_dirs

XDG = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR")


@pytest.fixture
def plain_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with no override, no legacy folder and no XDG variables."""
    home = tmp_path / "ann"
    home.mkdir()
    monkeypatch.delenv("DREAM_WINDOW_HOME")
    monkeypatch.setenv("HOME", str(home))
    for var in XDG:
        monkeypatch.delenv(var, raising=False)
    return home


def test_linux_follows_xdg(plain_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runtime = tmp_path / "run-1000"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert user_dirs("linux") == UserDirs(
        config=plain_home / ".config" / "dream-window",
        data=plain_home / ".local" / "share" / "dream-window",
        cache=plain_home / ".cache" / "dream-window",
        logs=plain_home / ".local" / "state" / "dream-window" / "log",
        runtime=runtime / "dream-window",
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dirs = user_dirs("linux")
    assert (dirs.config, dirs.cache) == (
        tmp_path / "cfg" / "dream-window",
        tmp_path / "cache" / "dream-window",
    )


def test_linux_without_a_runtime_dir_still_answers(plain_home: Path) -> None:
    # No XDG_RUNTIME_DIR (cron, ssh): platformdirs falls back (and warns once, which we silence).
    assert user_dirs("linux").runtime.is_absolute()


def test_macos_follows_apple_library_folders(plain_home: Path) -> None:
    library = plain_home / "Library"
    assert user_dirs("darwin") == UserDirs(
        config=library / "Application Support" / "dream-window",
        data=library / "Application Support" / "dream-window",
        cache=library / "Caches" / "dream-window",
        logs=library / "Logs" / "dream-window",
        runtime=library / "Caches" / "TemporaryItems" / "dream-window",
    )


def test_windows_uses_local_appdata(plain_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # platformdirs asks the Windows shell for known folders; this variable answers for it here.
    monkeypatch.setenv("WIN_PD_OVERRIDE_LOCAL_APPDATA", r"C:\Users\ann\AppData\Local")
    dirs = user_dirs("win32")
    local = PureWindowsPath(r"C:\Users\ann\AppData\Local")
    seen = {
        name: PureWindowsPath(str(getattr(dirs, name)))
        for name in ("config", "data", "cache", "logs", "runtime")
    }
    assert seen == {
        "config": local / "dream-window",
        "data": local / "dream-window",  # local, not roaming: frames do not follow the user around
        "cache": local / "dream-window" / "Cache",
        "logs": local / "dream-window" / "Logs",
        "runtime": local / "Temp" / "dream-window",
    }


def test_dream_window_home_holds_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREAM_WINDOW_HOME", str(tmp_path / "elsewhere"))
    root = tmp_path / "elsewhere"
    for platform in ("linux", "darwin", "win32"):
        assert user_dirs(platform) == UserDirs(
            config=root, data=root, cache=root / "cache", logs=root / "logs", runtime=root / "run"
        )
    assert home_dir() == root
    assert user_dirs().config_file == root / "config.yaml"
    assert user_dirs().output == root / "output"


def test_an_existing_legacy_folder_keeps_being_used(plain_home: Path) -> None:
    legacy = plain_home / ".dream-window"
    legacy.mkdir()
    assert user_dirs("linux") == UserDirs(
        config=legacy, data=legacy, cache=legacy / "cache", logs=legacy / "logs", runtime=legacy / "run"
    )
    assert home_dir() == legacy


def test_asking_creates_nothing(plain_home: Path) -> None:
    for platform in ("linux", "darwin"):
        user_dirs(platform)
    assert list(plain_home.iterdir()) == []


def test_the_user_config_sends_frames_to_the_data_folder(plain_home: Path) -> None:
    dirs = user_dirs("linux")
    assert dirs.config_file == plain_home / ".config" / "dream-window" / "config.yaml"
    assert dirs.output == plain_home / ".local" / "share" / "dream-window" / "output"


def test_this_machine_gets_what_platformdirs_gives_it(plain_home: Path) -> None:
    import platformdirs

    dirs = user_dirs()
    assert dirs.config == Path(platformdirs.user_config_dir("dream-window", appauthor=False))
    assert dirs.data == Path(platformdirs.user_data_dir("dream-window", appauthor=False))
    assert dirs.cache == Path(platformdirs.user_cache_dir("dream-window", appauthor=False))
    assert dirs.logs == Path(platformdirs.user_log_dir("dream-window", appauthor=False))
