"""The two wallpaper packages: their layout, the fields each host reads, and the command that
builds them (one-line errors, exit 2 for usage). That the page really works is
tests/web/test_wallpaper_browser.py, in Chromium."""

from __future__ import annotations

import json
import subprocess
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from dream_window.config import ViewerConfig
from dream_window.errors import ConfigError
from dream_window.wallpaper import WallpaperKind, build_package, check_url, viewer_url
from tests.conftest import dream_window

URL = "http://127.0.0.1:8765/"
PAGE = {"index.html", "launcher.js", "launcher.css"}
# LivelyInfoModel's properties (rocksdanister/lively, src/Lively/Lively.Models/LivelyInfoModel.cs).
LIVELY_FIELDS = {
    "AppVersion", "Title", "Thumbnail", "Preview", "Desc", "Author", "License", "Contact",
    "Type", "FileName", "Arguments", "IsAbsolutePath", "Id", "Tags", "Version",
}  # fmt: skip


class _Refs(HTMLParser):
    """The page's data attributes and the files it links."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.data = {k[5:]: v for k, v in a.items() if k.startswith("data-")}
        if tag == "script" and "src" in a:
            self.links.append(a["src"])
        if tag == "link" and a.get("rel") == "stylesheet":
            self.links.append(a["href"])


def refs(folder: Path) -> _Refs:
    parser = _Refs()
    parser.feed((folder / "index.html").read_text(encoding="utf-8"))
    return parser


def test_lively_package(tmp_path: Path) -> None:
    out = tmp_path / "lively"
    package = build_package(WallpaperKind.LIVELY, out, url=URL)
    names = {p.name for p in out.iterdir()}
    assert names == PAGE | {"LivelyInfo.json", "LivelyProperties.json", "thumbnail.jpg", "preview.gif"}
    assert set(package.files) == names

    info = json.loads((out / "LivelyInfo.json").read_text(encoding="utf-8"))
    assert set(info) == LIVELY_FIELDS
    assert info["Type"] == 1  # WallpaperType.web: a local page (3 would be a url wallpaper)
    assert info["FileName"] == "index.html" and info["IsAbsolutePath"] is False
    assert info["Title"] == "Dream Window"
    for key in ("FileName", "Thumbnail", "Preview"):
        assert (out / info[key]).is_file(), key
    with Image.open(out / info["Thumbnail"]) as thumb:
        assert thumb.format == "JPEG" and thumb.width > thumb.height
    with Image.open(out / info["Preview"]) as clip:
        assert clip.format == "GIF" and getattr(clip, "n_frames", 1) > 1

    # The settings panel: a dropdown is text, items and the index of the chosen item.
    props = json.loads((out / "LivelyProperties.json").read_text(encoding="utf-8"))
    fit = props["fit"]
    assert fit["type"] == "dropdown" and isinstance(fit["text"], str)
    assert fit["items"][fit["value"]].lower().startswith("cover")


def test_wallpaper_engine_package(tmp_path: Path) -> None:
    out = tmp_path / "we"
    build_package(WallpaperKind.WALLPAPER_ENGINE, out, url=URL, fit="contain")
    assert {p.name for p in out.iterdir()} == PAGE | {"project.json", "preview.jpg"}
    project = json.loads((out / "project.json").read_text(encoding="utf-8"))
    assert project["type"] == "web"
    assert project["file"] == "index.html" and (out / project["file"]).is_file()
    assert project["title"] == "Dream Window"
    with Image.open(out / project["preview"]) as preview:
        assert preview.format == "JPEG"
    fit = project["general"]["properties"]["fit"]
    assert fit["type"] == "combo" and fit["value"] == "contain"
    assert {o["value"] for o in fit["options"]} == {"cover", "contain"}
    assert all(set(o) == {"label", "value"} for o in fit["options"])


@pytest.mark.parametrize("kind", list(WallpaperKind))
def test_page_points_at_the_viewer_and_links_only_its_own_files(tmp_path: Path, kind: WallpaperKind) -> None:
    out = tmp_path / kind.value
    build_package(kind, out, url="http://127.0.0.1:9123")
    page = refs(out)
    assert page.data == {"viewer": "http://127.0.0.1:9123/", "fit": "cover"}
    assert sorted(page.links) == ["launcher.css", "launcher.js"]
    for link in page.links:
        assert (out / link).is_file()


def test_a_url_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    url = 'http://127.0.0.1:8765/a"><script>alert(1)</script>/'
    build_package(WallpaperKind.LIVELY, tmp_path / "x", url=url)
    text = (tmp_path / "x" / "index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in text
    assert refs(tmp_path / "x").data["viewer"] == url


def test_lively_zip_has_livelyinfo_at_its_root(tmp_path: Path) -> None:
    out = tmp_path / "dream-window.zip"
    build_package(WallpaperKind.LIVELY, out, url=URL)
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        assert "LivelyInfo.json" in names and PAGE <= names
        assert json.loads(archive.read("LivelyInfo.json"))["Type"] == 1
    with pytest.raises(ConfigError, match="already exists"):
        build_package(WallpaperKind.LIVELY, out, url=URL)
    build_package(WallpaperKind.LIVELY, out, url=URL, force=True)


@pytest.mark.parametrize(
    ("viewer", "expected"),
    [
        ({}, "http://127.0.0.1:8765/"),
        ({"host": "0.0.0.0", "port": 9000}, "http://127.0.0.1:9000/"),
        ({"host": "::1"}, "http://[::1]:8765/"),
        ({"host": "localhost"}, "http://localhost:8765/"),
    ],
)
def test_viewer_url_from_the_config(viewer: dict[str, object], expected: str) -> None:
    assert viewer_url(ViewerConfig.model_validate(viewer)) == expected


@pytest.mark.parametrize(
    ("viewer", "fragment"),
    [({"enabled": False}, "viewer is disabled"), ({"port": 0}, "needs a fixed port")],
)
def test_viewer_url_refuses_what_cannot_work(viewer: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        viewer_url(ViewerConfig.model_validate(viewer))


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/", "127.0.0.1:8765", "http://[nope]/", "http://h:99999/", "http://h/?x=1"]
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="--url"):
        check_url(url)


# --- the command ----------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return dream_window(*args, cwd=cwd, env={"COLUMNS": "60"})  # a narrow terminal: no wrapping


def test_command_builds_both_and_prints_paths_whole(tmp_path: Path) -> None:
    out = tmp_path / "[bold]wall paper with a long name that would wrap in a narrow terminal"
    done = run_cli("wallpaper", "lively", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout  # escaped for rich, and never wrapped
    assert "http://127.0.0.1:8765/" in done.stdout
    assert (out / "LivelyInfo.json").is_file()
    done = run_cli("wallpaper", "wallpaper-engine", str(tmp_path / "we"), "--fit", "contain", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        json.loads((tmp_path / "we" / "project.json").read_text())["general"]["properties"]["fit"]["value"]
        == "contain"
    )


@pytest.mark.parametrize(
    ("setup", "args", "fragment"),
    [
        ("taken", ["wallpaper", "lively", "{d}/taken"], "is not empty: choose a new folder, or use --force"),
        ("file", ["wallpaper", "lively", "{d}/file"], "is a file, not a folder"),
        (None, ["wallpaper", "lively", "{d}/x", "--url", "ftp://h/"], "--url must be an http:// or https://"),
        (None, ["wallpaper", "wallpaper-engine", "{d}/x.zip"], "a .zip is for Lively"),
        ("port0", ["wallpaper", "lively", "{d}/x", "-c", "{d}/c.yaml"], "viewer.port is 0"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    tmp_path: Path, setup: str | None, args: list[str], fragment: str
) -> None:
    if setup == "taken":
        (tmp_path / "taken").mkdir()
        (tmp_path / "taken" / "mine.txt").write_text("keep me")
    elif setup == "file":
        (tmp_path / "file").write_text("")
    elif setup == "port0":
        (tmp_path / "c.yaml").write_text("viewer:\n  port: 0\n")
    done = run_cli(*(a.format(d=tmp_path) for a in args), cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    if setup == "taken":
        assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"


def test_force_replaces_our_files_and_keeps_the_others(tmp_path: Path) -> None:
    out = tmp_path / "we"
    out.mkdir()
    (out / "index.html").write_text("old")
    (out / "notes.txt").write_text("mine")
    done = run_cli("wallpaper", "wallpaper-engine", str(out), "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "launcher.js" in (out / "index.html").read_text()
    assert (out / "notes.txt").read_text() == "mine"
