"""Live-wallpaper packages: folders that Lively Wallpaper or Wallpaper Engine load as a web wallpaper.

Both packages hold the same small page (``templates/``: ``index.html``, ``launcher.js``,
``launcher.css``). It does not copy the viewer: it finds the running service at the viewer's
address and navigates to it in wallpaper mode (``/?wallpaper=1&fit=cover``), so the wallpaper is
always the viewer of the installed version, served from its own origin under its own security
rules (web/security.py is unchanged: the page only reads). While the service is down the page says
"Dream Window is not running" and keeps trying; once the viewer runs, it reconnects by itself.

The formats, as their sources define them (see docs/wallpaper.md for the user's side):

* **Lively Wallpaper** (github.com/rocksdanister/lively): a folder (or a .zip of it) with
  ``LivelyInfo.json`` at its root. Its fields are those of ``LivelyInfoModel``
  (src/Lively/Lively.Models/LivelyInfoModel.cs): AppVersion, Title, Thumbnail, Preview (a preview
  clip), Desc, Author, License, Contact, Type, FileName, Arguments, IsAbsolutePath, Id, Tags,
  Version. ``Type`` is the ``WallpaperType`` enum (src/Lively/Lively.Models/Enums/WallpaperType.cs)
  written as its number, as Lively's Newtonsoft serializer does: app=0, **web=1** (a local page,
  FileName relative to the folder when IsAbsolutePath is false), webaudio=2, url=3 (FileName is
  the address itself; "used in the Type tab only, not for the Library"). We ship a web (1)
  wallpaper so the "not running" page works offline. ``LivelyProperties.json`` adds a settings
  panel (schemas/livelyPropertiesSchema.json: a dropdown has ``text``, ``items``, ``value`` = index);
  Lively calls ``livelyPropertyListener(name, value)`` in the page.
* **Wallpaper Engine** (docs.wallpaperengine.io/en/web/customization/properties.html): a web
  project is a folder with ``project.json``: ``type`` "web", ``file`` (the page), ``title``,
  ``preview`` (an image or gif), and user properties under ``general.properties`` (a combo has
  ``options`` of ``{label, value}``, ``order``, ``text``, ``type``, ``value``). The page gets them
  through ``window.wallpaperPropertyListener.applyUserProperties``.
"""

from __future__ import annotations

import html
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

from dream_window.backends.builtin import BuiltinEngine
from dream_window.config import ViewerConfig
from dream_window.errors import ConfigError
from dream_window.file_ops import atomic_write_bytes, write_error

FITS = ("cover", "contain")
TITLE = "Dream Window"
DESCRIPTION = (
    "An endless, slowly evolving AI dream (Dream Window). Shows the running dream-window service's "
    "viewer; start it with `dream-window run`."
)
TEMPLATE_FILES = ("index.html", "launcher.js", "launcher.css")
# Slots in templates/index.html (data attributes the launcher reads).
_URL_SLOT = "{{VIEWER_URL}}"
_FIT_SLOT = "{{FIT}}"
# Preview pictures come from the built-in engine (not AI): what a fresh install shows first.
_PREVIEW_PROMPT = "cosmic nebula, soft glow"
_PREVIEW_SEEDS = (7, 8, 9)
LIVELY_WEB = 1  # WallpaperType.web in Lively's enum (0 app, 1 web, 2 webaudio, 3 url)


class WallpaperKind(StrEnum):
    LIVELY = "lively"
    WALLPAPER_ENGINE = "wallpaper-engine"


@dataclass(frozen=True)
class BuiltPackage:
    kind: WallpaperKind
    folder: Path
    files: tuple[str, ...]
    viewer_url: str


def viewer_url(viewer: ViewerConfig) -> str:
    """The address the wallpaper reaches the viewer at: ``http://<viewer.host>:<viewer.port>/``.

    A wallpaper runs on the machine the service runs on, so an any-address bind (0.0.0.0, ::) is
    reached on loopback.
    """
    if not viewer.enabled:
        raise ConfigError(
            "the viewer is disabled (viewer.enabled: false): the wallpaper shows the viewer, enable it"
        )
    if viewer.port == 0:
        raise ConfigError(
            "viewer.port is 0 (a free port each run): the wallpaper needs a fixed port, set viewer.port"
        )
    host = viewer.host.strip() or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{viewer.port}/"


def check_url(url: str) -> str:
    """``url`` as the page will use it (ending in "/"), or a ConfigError saying what is wrong."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError as exc:
        raise ConfigError(f"--url is not a valid address ({exc}), got {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--url must be an http:// or https:// address of the viewer, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"--url must be the viewer's address without ?query or #fragment, got {url!r}")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return f"{parts.scheme}://{parts.netloc}{path}"


def prepare_folder(out: Path, *, force: bool) -> None:
    """Refuse what would surprise: a file named OUT, or a folder that already holds files (unless
    ``force``: then our files are replaced and the others left as they are)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder: give a folder for the wallpaper package")
    if out.is_dir() and not force:
        try:
            taken = any(out.iterdir())
        except OSError as exc:
            raise ConfigError(f"cannot read {out}: {exc.strerror or exc}") from exc
        if taken:
            raise ConfigError(f"{out} is not empty: choose a new folder, or use --force to replace its files")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(out, exc, what="create") from exc


def page_files(url: str, fit: str) -> dict[str, bytes]:
    """The launcher page with the viewer's address and the fit filled in."""
    if fit not in FITS:
        raise ConfigError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    root = files("dream_window.wallpaper") / "templates"
    out: dict[str, bytes] = {}
    for name in TEMPLATE_FILES:
        data = (root / name).read_bytes()
        if name == "index.html":
            text = data.decode("utf-8")
            text = text.replace(_URL_SLOT, html.escape(url, quote=True)).replace(_FIT_SLOT, fit)
            data = text.encode("utf-8")
        out[name] = data
    return out


def preview_frames(width: int, height: int) -> list[Image.Image]:
    """A few pictures from the built-in engine, the same on every machine (seeded)."""
    engine = BuiltinEngine(offload=False)
    return [Image.fromarray(engine.render(_PREVIEW_PROMPT, seed, width, height)) for seed in _PREVIEW_SEEDS]


def preview_jpeg(width: int = 640, height: int = 360) -> bytes:
    buf = io.BytesIO()
    preview_frames(width, height)[0].save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def preview_gif(width: int = 256, height: int = 144, steps: int = 5) -> bytes:
    """A looping crossfade through the preview pictures (Lively's "preview clip")."""
    frames = preview_frames(width, height)
    clip: list[Image.Image] = []
    for a, b in zip(frames, frames[1:] + frames[:1], strict=True):
        clip.append(a)
        for i in range(1, steps):
            clip.append(Image.blend(a, b, i / steps))
    buf = io.BytesIO()
    palette = [im.convert("P", palette=Image.Palette.ADAPTIVE) for im in clip]
    palette[0].save(buf, format="GIF", save_all=True, append_images=palette[1:], duration=120, loop=0)
    return buf.getvalue()


def lively_info() -> dict[str, object]:
    return {
        "AppVersion": "2.0.0.0",
        "Title": TITLE,
        "Thumbnail": "thumbnail.jpg",
        "Preview": "preview.gif",
        "Desc": DESCRIPTION,
        "Author": "Dream Window",
        "License": None,
        "Contact": None,
        "Type": LIVELY_WEB,
        "FileName": "index.html",
        "Arguments": None,
        "IsAbsolutePath": False,
        "Id": None,
        "Tags": ["ai", "generative", "dream"],
        "Version": 1,
    }


def lively_properties(fit: str) -> dict[str, object]:
    return {
        "fit": {
            "type": "dropdown",
            "value": FITS.index(fit),
            "text": "Fit",
            "items": ["Cover (fill the screen)", "Contain (whole picture)"],
        }
    }


def wallpaper_engine_project(fit: str) -> dict[str, object]:
    return {
        "title": TITLE,
        "description": DESCRIPTION,
        "type": "web",
        "file": "index.html",
        "preview": "preview.jpg",
        "tags": ["Abstract"],
        "contentrating": "Everyone",
        "version": 1,
        "general": {
            "properties": {
                "fit": {
                    "order": 100,
                    "text": "Fit",
                    "type": "combo",
                    "value": fit,
                    "options": [
                        {"label": "Cover (fill the screen)", "value": "cover"},
                        {"label": "Contain (whole picture)", "value": "contain"},
                    ],
                }
            }
        },
    }


def _extra_files(kind: WallpaperKind, fit: str) -> dict[str, Callable[[], bytes] | dict[str, object]]:
    if kind is WallpaperKind.LIVELY:
        return {
            "LivelyInfo.json": lively_info(),
            "LivelyProperties.json": lively_properties(fit),
            "thumbnail.jpg": preview_jpeg,
            "preview.gif": preview_gif,
        }
    return {"project.json": wallpaper_engine_project(fit), "preview.jpg": preview_jpeg}


def package_files(kind: WallpaperKind, *, url: str, fit: str = "cover") -> dict[str, bytes]:
    """Every file of the ``kind`` package, by name (all at the package's root)."""
    contents = page_files(check_url(url), fit)
    for name, content in _extra_files(kind, fit).items():
        if isinstance(content, dict):
            contents[name] = (json.dumps(content, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        else:
            contents[name] = content()
    return contents


def build_package(
    kind: WallpaperKind, out: Path, *, url: str, fit: str = "cover", force: bool = False
) -> BuiltPackage:
    """Write the ``kind`` package into the folder ``out`` (or, for Lively, the archive ``out`` when
    it ends in .zip: Lively imports a .zip with LivelyInfo.json at its root); returns what was written.

    ConfigError (a usage error) for a bad folder, URL or fit; FrameWriteError when a file cannot
    be written. Every file is written atomically.
    """
    url = check_url(url)
    contents = package_files(kind, url=url, fit=fit)
    if out.suffix.lower() == ".zip":
        if kind is not WallpaperKind.LIVELY:
            raise ConfigError(f"{out}: a .zip is for Lively; Wallpaper Engine takes a folder")
        if out.is_dir() or (out.exists() and not force):
            raise ConfigError(f"{out} already exists: choose a new name, or use --force to replace it")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in contents.items():
                archive.writestr(name, data)
        atomic_write_bytes(out, buf.getvalue(), fsync=False)
        return BuiltPackage(kind=kind, folder=out, files=tuple(contents), viewer_url=url)
    prepare_folder(out, force=force)
    for name, data in contents.items():
        atomic_write_bytes(out / name, data, fsync=False)
    return BuiltPackage(kind=kind, folder=out, files=tuple(contents), viewer_url=url)


__all__ = [
    "FITS",
    "BuiltPackage",
    "WallpaperKind",
    "build_package",
    "check_url",
    "package_files",
    "viewer_url",
]
