"""The ``.rmskin`` package: Rainmeter's installer format, as its Skin Packager writes it and its Skin
Installer reads it (``SkinInstaller/DialogPackage.cpp``, ``DialogInstall.cpp``).

Layout: a zip archive holding ``RMSKIN.ini`` (section ``[rmskin]``: Name, Author, Version, LoadType,
Load, VariableFiles, MinimumRainmeter, MinimumWindows) and the skin under ``Skins/<name>/``, entry
names with forward slashes, deflated; then a 16-byte footer the installer checks before it opens
the zip: the archive's length (little-endian int64, which must equal the file's length less the
footer), a flags byte (0) and the key ``RMSKIN\\0``.

``VariableFiles`` names Settings.inc: when the package is installed over an earlier one, Rainmeter's
installer keeps the values the user set there.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from dream_window import __version__
from dream_window.config import DreamConfig
from dream_window.file_ops import atomic_write_bytes
from dream_window.rainmeter.install import SETTINGS, SKIN_NAME, installed_files

FOOTER = struct.Struct("<qB7s")  # __int64 size; BYTE flags; char key[7]
KEY = b"RMSKIN\0"
MINIMUM_RAINMETER = "4.3.0"  # RunCommand and ActionTimer ship with it
MINIMUM_WINDOWS = "10.0"  # curl.exe ships with Windows 10 1803


def rmskin_ini() -> str:
    """RMSKIN.ini's text (ASCII; the installer reads it with the profile API)."""
    lines = [
        "[rmskin]",
        "Name=Dream Window",
        "Author=Dream Window",
        f"Version={__version__}",
        "LoadType=Skin",
        f"Load={SKIN_NAME}\\{SKIN_NAME}.ini",
        f"VariableFiles={SKIN_NAME}\\{SETTINGS.replace('/', chr(92))}",
        f"MinimumRainmeter={MINIMUM_RAINMETER}",
        f"MinimumWindows={MINIMUM_WINDOWS}",
    ]
    return "\r\n".join(lines) + "\r\n"


def build_rmskin(config: DreamConfig) -> bytes:
    """The package's bytes, Settings.inc pointing at ``config``'s output folder and API."""
    files, _ = installed_files(config, None)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("RMSKIN.ini", rmskin_ini().encode("ascii"))
        for relative, data in sorted(files.items()):
            archive.writestr(f"Skins/{SKIN_NAME}/{relative}", data)
    body = buffer.getvalue()
    return body + FOOTER.pack(len(body), 0, KEY)


def write_rmskin(path: Path, config: DreamConfig) -> int:
    """Write the package to ``path``; returns its size in bytes."""
    data = build_rmskin(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data, fsync=False)
    return len(data)
