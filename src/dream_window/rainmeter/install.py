"""Installing the skin: where Rainmeter keeps skins, the skin's files as Rainmeter reads them, and
``Settings.inc`` pointing at the configured output folder.

Where the Skins folder is, as Rainmeter's own installer finds it (``SkinInstaller/Application.cpp``):
``Rainmeter.ini`` beside ``Rainmeter.exe`` for a portable install, else
``%APPDATA%\\Rainmeter\\Rainmeter.ini``; its ``[Rainmeter] SkinPath=`` (environment variables expanded,
a trailing backslash added). Rainmeter writes ``SkinPath`` (``Documents\\Rainmeter\\Skins\\``) on its
first run, so a missing key means Rainmeter never ran, and the installer refuses too. The lookup is
a pure function of an environment and a file reader, so it is tested anywhere.

A re-install keeps what the user set in ``Settings.inc`` (size, fade, colours, token ...) and
updates only what dream-window owns: ``OutputDir`` and ``ApiUrl``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PureWindowsPath

from dream_window.config import DreamConfig
from dream_window.errors import DreamWindowError
from dream_window.file_ops import atomic_write_bytes
from dream_window.rainmeter.encoding import rainmeter_text, read_skin_text

SKIN_NAME = "DreamWindow"
SETTINGS = "@Resources/Settings.inc"
# What dream-window decides in Settings.inc; everything else there is the user's.
MANAGED = ("OutputDir", "ApiUrl")
# Every text file of the skin is written UTF-16 LE with a BOM (see encoding.py).
TEXT_SUFFIXES = (".ini", ".inc", ".lua")
_ENV_VAR = re.compile(r"%([^%]+)%")
_KEY = re.compile(r"^\s*([^;=\s][^=]*?)\s*=(.*)$")


class SkinsFolderNotFound(DreamWindowError):
    """Rainmeter's Skins folder could not be found (not Windows, no Rainmeter.ini, no SkinPath)."""


def skin_source() -> Path:
    """The skin's source folder inside the installed package."""
    return Path(str(resources.files("dream_window.rainmeter").joinpath("skin", SKIN_NAME)))


def _expand(value: str, env: Mapping[str, str]) -> str:
    """%NAME% expanded like ExpandEnvironmentStrings (case-insensitive; unknown names kept)."""
    upper = {k.upper(): v for k, v in env.items()}
    return _ENV_VAR.sub(lambda m: upper.get(m.group(1).upper(), m.group(0)), value)


def ini_value(text: str, section: str, key: str) -> str | None:
    """One value of an INI text the way the profile API reads it: sections and keys
    case-insensitive, the first occurrence wins, surrounding quotes stripped."""
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip().lower()
            continue
        if current != section.lower():
            continue
        m = _KEY.match(line)
        if m and m.group(1).lower() == key.lower():
            value = m.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            return value
    return None


def find_skins_dir(
    env: Mapping[str, str],
    read: Callable[[PureWindowsPath], bytes | None],
    *,
    program_dir: PureWindowsPath | None = None,
) -> PureWindowsPath:
    """Rainmeter's Skins folder on Windows, from ``env`` (the environment) and ``read`` (a file's
    bytes, None when it does not exist). ``program_dir``: a portable Rainmeter's folder."""
    candidates = []
    if program_dir is not None:
        candidates.append(program_dir / "Rainmeter.ini")
    appdata = env.get("APPDATA") or next((v for k, v in env.items() if k.upper() == "APPDATA"), None)
    if appdata:
        candidates.append(PureWindowsPath(appdata) / "Rainmeter" / "Rainmeter.ini")
    if not candidates:
        raise SkinsFolderNotFound("APPDATA is not set, so Rainmeter's settings cannot be found")
    for ini in candidates:
        data = read(ini)
        if data is None:
            continue
        skin_path = ini_value(read_skin_text(data), "Rainmeter", "SkinPath")
        if not skin_path:
            raise SkinsFolderNotFound(f"{ini} has no SkinPath: start Rainmeter once, or pass --skins-dir")
        return PureWindowsPath(_expand(skin_path, env))
    raise SkinsFolderNotFound(
        f"Rainmeter's settings ({candidates[-1]}) are not there: is Rainmeter installed?"
    )


def windows_skins_dir() -> Path:
    """The Skins folder of this Windows user's Rainmeter (raises SkinsFolderNotFound elsewhere)."""
    if os.name != "nt":
        raise SkinsFolderNotFound("Rainmeter runs on Windows only; pass --skins-dir DIR to install elsewhere")

    def read(path: PureWindowsPath) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    return Path(find_skins_dir(os.environ, read))


# --- Settings.inc --------------------------------------------------------------------------------


def api_url(config: DreamConfig) -> str:
    host = config.viewer.host
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: the skin talks to this machine
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.viewer.port}"


def output_dir_setting(config: DreamConfig) -> str:
    """The configured output folder, absolute, with Windows separators and a trailing backslash."""
    text = str(config.output_dir.resolve()).replace("/", "\\")
    return text if text.endswith("\\") else text + "\\"


def managed_values(config: DreamConfig) -> dict[str, str]:
    return {"OutputDir": output_dir_setting(config), "ApiUrl": api_url(config)}


def settings_keys(text: str) -> dict[str, str]:
    """Key -> value of every ``Key=Value`` line in ``[Variables]``, keys as written."""
    out: dict[str, str] = {}
    section = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip().lower()
            continue
        m = _KEY.match(line)
        if section == "variables" and m and m.group(1).lower() not in {k.lower() for k in out}:
            out[m.group(1)] = m.group(2)
    return out


@dataclass
class SettingsMerge:
    text: str
    kept: dict[str, str] = field(default_factory=dict)  # the user's values that differ from ours
    set: dict[str, str] = field(default_factory=dict)  # the managed values written


def merge_settings(template: str, managed: Mapping[str, str], existing: str | None) -> SettingsMerge:
    """The shipped Settings.inc (comments and order kept) with ``managed`` values, and every other
    value the user already has in ``existing``."""
    users = {k.lower(): (k, v) for k, v in settings_keys(existing).items()} if existing else {}
    managed_lower = {k.lower(): v for k, v in managed.items()}
    result = SettingsMerge(text="")
    lines = []
    known = set()
    for line in template.splitlines():
        m = _KEY.match(line)
        if m is None or line.lstrip().startswith(";"):
            lines.append(line)
            continue
        key, value = m.group(1), m.group(2)
        known.add(key.lower())
        if key.lower() in managed_lower:
            value = managed_lower[key.lower()]
            result.set[key] = value
        elif key.lower() in users and users[key.lower()][1] != value:
            value = users[key.lower()][1]
            result.kept[key] = value
        lines.append(f"{key}={value}")
    extra = [(k, v) for lk, (k, v) in users.items() if lk not in known]
    if extra:  # variables the user added: kept at the end
        lines.append("")
        lines.append("; ---- Your own additions (kept by dream-window rainmeter install)")
        for k, v in extra:
            lines.append(f"{k}={v}")
            result.kept[k] = v
    result.text = "\n".join(lines) + "\n"
    return result


# --- installing ---------------------------------------------------------------------------------


def skin_files(source: Path | None = None) -> Iterator[tuple[str, Path]]:
    """(relative path with forward slashes, source file) of every file of the skin."""
    root = source or skin_source()
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            yield path.relative_to(root).as_posix(), path


def encoded(relative: str, path: Path) -> bytes:
    """A skin file as it is installed: text files UTF-16 LE with a BOM, anything else as it is."""
    if relative.lower().endswith(TEXT_SUFFIXES):
        return rainmeter_text(path.read_text(encoding="ascii"))
    return path.read_bytes()


@dataclass
class InstallReport:
    target: Path
    replaced: bool  # a DreamWindow skin was there already
    settings: SettingsMerge
    files: list[str]


def installed_files(
    config: DreamConfig, existing_settings: str | None
) -> tuple[dict[str, bytes], SettingsMerge]:
    """Every file of the skin as it is installed (relative path -> bytes), Settings.inc merged."""
    files = {}
    merge = SettingsMerge(text="")
    for relative, path in skin_files():
        if relative == SETTINGS:
            merge = merge_settings(
                path.read_text(encoding="ascii"), managed_values(config), existing_settings
            )
            files[relative] = rainmeter_text(merge.text)
        else:
            files[relative] = encoded(relative, path)
    return files, merge


def install_skin(skins_dir: Path, config: DreamConfig) -> InstallReport:
    """Copy the skin into ``skins_dir/DreamWindow``: files of an older version are replaced, files
    it no longer has removed, the user's settings merged."""
    if not skins_dir.is_dir():
        raise SkinsFolderNotFound(
            f"{skins_dir} is not a folder: give Rainmeter's Skins folder (usually Documents\\Rainmeter\\Skins)"
        )
    target = skins_dir / SKIN_NAME
    replaced = target.exists()
    settings_path = target / SETTINGS
    existing = read_skin_text(settings_path.read_bytes()) if settings_path.is_file() else None
    files, merge = installed_files(config, existing)
    if replaced:
        # Files the skin no longer has go; the user's Settings.inc was read above and is rewritten.
        for old in sorted(target.rglob("*"), reverse=True):
            rel = old.relative_to(target).as_posix()
            if old.is_file() and rel not in files:
                old.unlink()
    for relative, data in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data, fsync=False)
    return InstallReport(target=target, replaced=replaced, settings=merge, files=sorted(files))
