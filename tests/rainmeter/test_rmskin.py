"""The .rmskin package, read the way Rainmeter's Skin Installer reads it (DialogInstall.cpp): the
16-byte footer first, then the zip, RMSKIN.ini with the profile API's encoding rules."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from click.testing import CliRunner

from dream_window import __version__
from dream_window.cli import main
from tests.rainmeter.rainmeter_like import BOM, parse_skin_file, read_skin_file


def read_like_the_installer(data: bytes) -> zipfile.ZipFile:
    size, flags, key = struct.unpack("<qB7s", data[-16:])
    # strcmp(footer.key, "RMSKIN") == 0, then footer.size must be where the footer starts
    assert key == b"RMSKIN\0"
    assert size == len(data) - 16
    assert flags == 0  # no flags: the installer backs up the skin it replaces
    return zipfile.ZipFile(io.BytesIO(data[:size]))


def test_package_layout(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("system:\n  output_dir: 'sortie château'\n", encoding="utf-8")
    out = tmp_path / "dist"  # a folder that does not exist yet, as `make rmskin` gives
    result = CliRunner().invoke(main, ["rainmeter", "package", str(out), "--config", str(config)])
    assert result.exit_code == 0, result.output
    package = out / f"DreamWindow-{__version__}.rmskin"
    archive = read_like_the_installer(package.read_bytes())
    names = archive.namelist()
    assert names[0] == "RMSKIN.ini"
    assert sorted(names[1:]) == [
        "Skins/DreamWindow/@Resources/Scripts/DreamWindow.lua",
        "Skins/DreamWindow/@Resources/Settings.inc",
        "Skins/DreamWindow/DreamWindow.ini",
    ]
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist())
    options = parse_skin_file(archive.read("RMSKIN.ini"))["rmskin"]
    assert options["Name"] == "Dream Window"
    assert options["Version"] == __version__
    assert (options["LoadType"], options["Load"]) == ("Skin", "DreamWindow\\DreamWindow.ini")
    assert options["VariableFiles"] == "DreamWindow\\@Resources\\Settings.inc"  # kept on upgrade
    assert options["MinimumRainmeter"] == "4.3.0"
    for name in names[1:]:
        assert archive.read(name).startswith(BOM), name  # read as Unicode by Rainmeter
    settings = read_skin_file(archive.read("Skins/DreamWindow/@Resources/Settings.inc"))
    expected = str((tmp_path / "sortie château").resolve()).replace("/", "\\") + "\\"
    assert f"OutputDir={expected}" in settings


def test_package_needs_the_rmskin_extension(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["rainmeter", "package", str(tmp_path / "skin.zip")])
    assert result.exit_code == 2 and ".rmskin" in result.output
