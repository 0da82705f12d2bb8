"""Finding Rainmeter's Skins folder (a pure function over an environment and a file reader),
installing the skin, keeping the user's settings on a re-install, and the CLI's errors."""

from __future__ import annotations

import os
from pathlib import Path, PureWindowsPath

import pytest
from click.testing import CliRunner

from dream_window.cli import main
from dream_window.rainmeter.install import (
    SkinsFolderNotFound,
    find_skins_dir,
    install_skin,
    managed_values,
    merge_settings,
    skin_source,
)
from tests.rainmeter.rainmeter_like import parse_skin_file, read_skin_file
from tests.web.conftest import dream_config

APPDATA = PureWindowsPath(r"C:\Users\José\AppData\Roaming")
ENV = {"APPDATA": str(APPDATA), "USERPROFILE": r"C:\Users\José"}


def reader(files: dict[PureWindowsPath, bytes]):  # type: ignore[no-untyped-def]
    return lambda path: files.get(path)


def utf16(text: str) -> bytes:
    return b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        # What Rainmeter writes on its first run (UTF-16, as it keeps its settings)
        (
            utf16("[Rainmeter]\nLogging=0\nSkinPath=C:\\Users\\José\\Documents\\Rainmeter\\Skins\\\n"),
            r"C:\Users\José\Documents\Rainmeter\Skins",
        ),
        # an ANSI file, another case, environment variables, quotes
        (
            '[rainmeter]\nskinpath="%USERPROFILE%\\OneDrive\\Skins"\n'.encode("cp1252"),
            r"C:\Users\José\OneDrive\Skins",
        ),
        # the first [Rainmeter] key wins; other sections' SkinPath do not count
        (b"[Other]\nSkinPath=D:\\no\n[Rainmeter]\nSkinPath=D:\\Skins\n", r"D:\Skins"),
    ],
)
def test_skins_dir_from_rainmeter_ini(content: bytes, expected: str) -> None:
    files = {APPDATA / "Rainmeter" / "Rainmeter.ini": content}
    assert find_skins_dir(ENV, reader(files)) == PureWindowsPath(expected)


def test_a_portable_rainmeter_is_asked_first() -> None:
    portable = PureWindowsPath(r"D:\Rainmeter")
    files = {
        portable / "Rainmeter.ini": b"[Rainmeter]\nSkinPath=D:\\Rainmeter\\Skins\\\n",
        APPDATA / "Rainmeter" / "Rainmeter.ini": b"[Rainmeter]\nSkinPath=C:\\other\n",
    }
    assert find_skins_dir(ENV, reader(files), program_dir=portable) == PureWindowsPath(r"D:\Rainmeter\Skins")


@pytest.mark.parametrize(
    ("env", "files", "says"),
    [
        (ENV, {}, "is Rainmeter installed?"),
        (ENV, {APPDATA / "Rainmeter" / "Rainmeter.ini": b"[Rainmeter]\nLogging=0\n"}, "start Rainmeter once"),
        ({}, {}, "APPDATA is not set"),
    ],
)
def test_no_skins_dir_says_why(env: dict[str, str], files: dict[PureWindowsPath, bytes], says: str) -> None:
    with pytest.raises(SkinsFolderNotFound, match=says.replace("?", r"\?")):
        find_skins_dir(env, reader(files))


def test_reinstall_keeps_the_users_settings(tmp_path: Path) -> None:
    skins = tmp_path / "Skins"
    skins.mkdir()
    first = install_skin(skins, dream_config(tmp_path / "a"))
    assert not first.replaced
    settings = first.target / "@Resources" / "Settings.inc"
    # The user edits in Notepad (which keeps the UTF-16) and adds a variable of their own.
    text = (
        read_skin_file(settings.read_bytes())
        .replace("Width=256", "Width=400")
        .replace("FadeSteps=12", "FadeSteps=20")
    )
    settings.write_bytes(utf16(text + "MyOwn=x\n"))
    (first.target / "@Resources" / "stale.txt").write_text("from an older version")
    cfg = dream_config(tmp_path / "b", viewer={"port": 9999})
    second = install_skin(skins, cfg)
    assert second.replaced
    assert second.settings.kept == {"Width": "400", "FadeSteps": "20", "MyOwn": "x"}
    assert second.settings.set == managed_values(cfg)
    variables = parse_skin_file(settings.read_bytes())["Variables"]
    assert (variables["Width"], variables["FadeSteps"], variables["MyOwn"]) == ("400", "20", "x")
    assert variables["ApiUrl"] == "http://127.0.0.1:9999"
    assert variables["OutputDir"] == str(cfg.output_dir.resolve()).replace("/", "\\") + "\\"
    assert variables["Height"] == "512"  # untouched defaults stay
    assert not (first.target / "@Resources" / "stale.txt").exists()


def test_merge_keeps_comments_and_order() -> None:
    template = (skin_source() / "@Resources" / "Settings.inc").read_text(encoding="ascii")
    merged = merge_settings(template, {"OutputDir": "X:\\o\\", "ApiUrl": "http://h:1"}, None)
    assert merged.kept == {}
    out = merged.text.splitlines()
    assert len(out) == len(template.splitlines())
    assert [line for line in out if line.startswith(";")] == [
        line for line in template.splitlines() if line.startswith(";")
    ]


def test_viewer_on_all_interfaces_is_reached_on_loopback(tmp_path: Path) -> None:
    cfg = dream_config(tmp_path, viewer={"host": "0.0.0.0", "port": 8000})
    assert managed_values(cfg)["ApiUrl"] == "http://127.0.0.1:8000"


# --- the command --------------------------------------------------------------------------------


def write_config(tmp_path: Path, output: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"system:\n  output_dir: '{output.as_posix()}'\nviewer:\n  port: 8799\n", encoding="utf-8"
    )
    return path


def test_install_command_copies_and_says_what_it_did(tmp_path: Path) -> None:
    skins = tmp_path / "Skins"
    skins.mkdir()
    config = write_config(tmp_path, tmp_path / "sortie [dream]")
    result = CliRunner().invoke(
        main, ["rainmeter", "install", "--skins-dir", str(skins), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "Installed the Dream Window skin" in result.output
    assert "sortie [dream]" in result.output  # printed as written, brackets and all
    assert "ApiUrl=http://127.0.0.1:8799" in result.output
    again = CliRunner().invoke(
        main, ["rainmeter", "install", "--skins-dir", str(skins), "--config", str(config)]
    )
    assert again.exit_code == 0 and "Updated the Dream Window skin" in again.output


@pytest.mark.skipif(os.name == "nt", reason="on Windows the folder comes from Rainmeter's settings")
def test_install_without_a_skins_dir_is_a_usage_error_here(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["rainmeter", "install", "--config", str(write_config(tmp_path, tmp_path))]
    )
    assert result.exit_code == 2
    assert "--skins-dir" in result.output
    assert "Traceback" not in result.output


def test_install_into_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path)
    result = CliRunner().invoke(
        main, ["rainmeter", "install", "--skins-dir", str(tmp_path / "nope"), "--config", str(config)]
    )
    assert result.exit_code == 2 and "is not a folder" in result.output
