"""The Rainmeter skin is linted (it parses; every file, measure, meter and variable it names
exists), and the core really writes the files the skin reads."""

from __future__ import annotations

import asyncio
import configparser
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lupa.lua51 import LuaRuntime  # Rainmeter's Lua is 5.1
from PIL import Image

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.dream.controller import State
from dream_window.events import EventBus, FramePublished
from dream_window.rainmeter import (
    FRAMES_DIR,
    KEEP,
    SECTION,
    STATUS_INI,
    STATUS_LUA,
    RainmeterWriter,
    lua_bytes,
    render_ini,
    status_line,
)
from dream_window.rainmeter.install import skin_source
from tests.conftest import FakeClock, hang_guard, until
from tests.rainmeter.rainmeter_like import BOM
from tests.web.conftest import dream_config

SKIN = skin_source()
INI = SKIN / "DreamWindow.ini"
RESOURCES = SKIN / "@Resources"
LUA = RESOURCES / "Scripts" / "DreamWindow.lua"

# Variables Rainmeter defines itself.
BUILTIN_VARIABLES = {
    "@",
    "CURRENTPATH",
    "CURRENTFILE",
    "CURRENTCONFIG",
    "ROOTCONFIGPATH",
    "SKINSPATH",
    "SETTINGSPATH",
    "PROGRAMPATH",
    "ADDONSPATH",
    "PLUGINSPATH",
    "CURRENTSECTION",
    "CRLF",
    "CONFIGEDITOR",  # the user's editor (ConfigParser::GetBuiltInVariable)
}
BANG_SECTION = re.compile(
    r"!(?:UpdateMeter|UpdateMeasure|CommandMeasure|SetOption|ShowMeter|HideMeter)\s+\"?(\w+)"
)


def parse(path: Path) -> configparser.ConfigParser:
    """Rainmeter's dialect: ';' comments, no inline comments, '=' only, case-insensitive keys,
    no '%' interpolation (Text=%1), and a section may repeat nothing."""
    cp = configparser.ConfigParser(
        interpolation=None,
        delimiters=("=",),
        comment_prefixes=(";",),
        inline_comment_prefixes=None,
        strict=True,
        empty_lines_in_values=False,
    )
    text = path.read_text(encoding="utf-8")
    cp.read_string(text, source=str(path))
    return cp


def variables_defined(skin: configparser.ConfigParser) -> set[str]:
    names = {k.lower() for k in skin["Variables"] if k.lower() != "@include"}
    include = skin["Variables"]["@Include"].replace("#@#", str(RESOURCES) + "/").replace("\\", "/")
    names |= {k.lower() for k in parse(Path(include))["Variables"]}
    # Variables the Lua script sets at run time must be declared in the skin too (checked below).
    return names


def test_skin_sources_are_ascii() -> None:
    # The sources stay readable in a diff; install/package encode them as UTF-16 LE with a BOM.
    for path in (INI, RESOURCES / "Settings.inc", LUA):
        path.read_text(encoding="ascii")


def test_skin_parses_and_every_reference_exists() -> None:
    skin = parse(INI)
    sections = {s.lower(): s for s in skin.sections()}
    measures = {s.lower() for s in skin.sections() if "measure" in {k.lower() for k in skin[s]}}
    meters = {s.lower() for s in skin.sections() if "meter" in {k.lower() for k in skin[s]}}
    assert {"rainmeter", "metadata", "variables"} <= set(sections)
    defined = variables_defined(skin)
    for section in skin.sections():
        for key, value in skin[section].items():
            where = f"[{section}] {key}={value}"
            for var in re.findall(r"#([\w@]+)#", value):
                assert var.upper() in BUILTIN_VARIABLES or var.lower() in defined, (
                    f"undefined #{var}# in {where}"
                )
            for name in re.findall(r"\[(\w+)\]", value):
                # [MeasureName] / [MeterName] section variables; bangs are written [!Bang ...]
                assert name.lower() in sections, f"unknown section [{name}] in {where}"
            for name in BANG_SECTION.findall(value):
                assert name.lower() in measures | meters, f"unknown measure/meter {name} in {where}"
            if key.lower() == "measurename":
                assert value.lower() in measures, where
            if key.lower() in ("scriptfile", "@include", "imagename") and "#@#" in value:
                path = Path(value.replace("#@#", str(RESOURCES) + "/").replace("\\", "/"))
                assert path.is_file(), f"missing file in {where}"
    # ActionTimer: every action a list names is defined on the same measure.
    fade = skin["MeasureFade"]
    for key, value in fade.items():
        if key.lower().startswith("actionlist"):
            action = value.split(",")[0].split()[-1]
            assert action.lower() in {k.lower() for k in fade}, f"ActionTimer action {action} not defined"
    # Meters that only bangs update must say so, and must re-read their variables.
    for meter in ("MeterFrameA", "MeterFrameB"):
        assert skin[meter]["UpdateDivider"] == "-1" and skin[meter]["DynamicVariables"] == "1"
        assert skin[meter]["Meter"] == "Image"
    assert skin["MeterFrameB"]["ImageAlpha"] == "#AlphaB#"


def test_lua_names_only_what_exists() -> None:
    skin = parse(INI)
    lua = LUA.read_text(encoding="ascii")
    declared = {k.lower() for k in skin["Variables"]}
    for var in re.findall(r"'!SetVariable',\s*'(\w+)'", lua):
        assert var.lower() in declared, f"the script sets {var}, which [Variables] does not declare"
    defined = variables_defined(skin)
    for var in re.findall(r"GetVariable\('(\w+)'\)", lua):
        assert var.lower() in defined, var
    sections = {s.lower() for s in skin.sections()}
    for name in re.findall(r"'!(?:UpdateMeter|CommandMeasure)',\s*'(\w+)'\s*[,)]", lua):
        assert name.lower() in sections, name
    # Click('X') runs [MeasureX], whose FinishAction reports back with Finished('X').
    clicks = set(re.findall(r"Click\('(\w+)'\)", INI.read_text(encoding="ascii")))
    assert clicks == {"Pause", "Skip", "Like"}
    for name in clicks:
        measure = skin[f"Measure{name}"]
        assert measure["Plugin"] == "RunCommand" and measure["OutputType"] == "ANSI"
        assert measure["FinishAction"] == f"[!CommandMeasure MeasureDream \"Finished('{name}')\"]"
        assert '-w "HTTP %{http_code}"' in measure["Parameter"]
    options = {k.lower() for k in skin["MeasureDream"]}
    for opt in re.findall(r"SELF:GetOption\('(\w+)'\)", lua):
        assert opt.lower() in options, opt
    assert skin["MeasureDream"]["StatusFile"] == f"#OutputDir#{FRAMES_DIR}\\{STATUS_LUA}"
    assert skin["MeasureDream"]["FramesFolder"] == f"#OutputDir#{FRAMES_DIR}\\"


async def test_core_writes_what_the_skin_reads(tmp_path: Path) -> None:
    cfg = dream_config(tmp_path, generation={"history_size": 2})
    backend = BuiltinEngine()
    await backend.start()
    controller = build_controller(cfg, backend, fsync=False, max_frames=7)
    rainmeter = RainmeterWriter(cfg)
    await rainmeter.start(controller)
    ini_path = cfg.output_dir / STATUS_INI
    assert _read(ini_path)["State"] == "starting"  # written at once, before the first frame
    await controller.run()
    await rainmeter.close()  # what the controller does with its services once stopped

    status = _read(ini_path)
    assert _read_lua(cfg.output_dir / FRAMES_DIR / STATUS_LUA) == status  # the two files agree
    lua = LUA.read_text(encoding="ascii")
    for key in re.findall(r"field\(status, '(\w+)'\)", lua):
        assert key in status, f"the skin reads {key}, the core does not write it"
    assert status["State"] == "stopped"
    assert status["FrameIndex"] == str(controller.output.last_index) == "7"
    frames = sorted(p.name for p in (cfg.output_dir / FRAMES_DIR).glob("frame_*"))
    # The newest KEEP frames, under their own numbers, whatever the history keeps (2 here).
    assert frames == [f"frame_{i:06d}.png" for i in range(7 - KEEP + 1, 8)]
    assert status["FrameName"] == "frame_000007.png"
    shown = cfg.output_dir / FRAMES_DIR / status["FrameName"]
    assert shown.read_bytes() == controller.output.current_path.read_bytes()
    with Image.open(shown) as img:  # the skin's prompt is the one of the picture it shows
        assert status["Prompt"] == " ".join(img.text["prompt"].split())
    assert not list((cfg.output_dir / FRAMES_DIR).glob(".*.tmp"))


async def test_a_prompt_typed_before_the_first_frame_reaches_status_ini(tmp_path: Path) -> None:
    cfg = dream_config(tmp_path)
    backend = BuiltinEngine()
    await backend.start()
    controller = build_controller(cfg, backend, fsync=False)
    rainmeter = RainmeterWriter(cfg)
    await rainmeter.start(controller)
    ini_path = cfg.output_dir / STATUS_INI
    await controller.set_prompt("a prompt\nwith a line break = and [brackets]")
    await rainmeter.flush()  # written off the event loop: wait for it
    s = _read(ini_path)
    # Nothing is on screen yet: the typed prompt is what comes next, held against rotation.
    assert (s["Prompt"], s["PromptHeld"]) == ("", "1")
    assert s["NextPrompt"] == "a prompt with a line break = and [brackets]"
    await rainmeter.close()


async def test_status_ini_shows_the_dream_paused_until_every_reason_is_resumed(tmp_path: Path) -> None:
    cfg = dream_config(tmp_path)
    backend = BuiltinEngine()
    await backend.start()
    controller = build_controller(cfg, backend, fsync=False)
    rainmeter = RainmeterWriter(cfg)
    await rainmeter.start(controller)
    ini_path = cfg.output_dir / STATUS_INI

    async def shown() -> tuple[str, str, str, str]:
        await rainmeter.flush()  # written off the event loop: wait for it
        s = _read(ini_path)
        return s["State"], s["Paused"], s["UserPaused"], s["PauseReason"]

    run = asyncio.create_task(controller.run())  # the dream's own loop: its state is what is shown
    try:
        await until(lambda: controller.state is State.RUNNING and controller.frame_count > 0, "a frame")
        await controller.pause("user")
        await controller.pause("game: eldenring.exe")
        assert controller.state is State.PAUSED
        assert await shown() == ("paused", "1", "1", "user; game: eldenring.exe")
        await controller.resume("user")
        assert controller.state is State.PAUSED, "the game still holds the pause"
        assert await shown() == ("paused", "1", "0", "game: eldenring.exe")
        await controller.resume("game: eldenring.exe")
        assert controller.state is State.RUNNING
        assert await shown() == ("running", "0", "0", "")
    finally:
        controller.stop()
        await hang_guard(run, 30)  # a hang guard
        await rainmeter.close()
    assert _read(ini_path)["State"] == "stopped"


class ThreadRecordingWriter(RainmeterWriter):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.threads: list[int] = []

    def _write(self, frames, status) -> None:  # type: ignore[no-untyped-def]
        self.threads.append(threading.get_ident())
        super()._write(frames, status)


async def test_frames_are_the_published_bytes_written_off_the_event_loop(tmp_path: Path) -> None:
    cfg = dream_config(tmp_path)
    controller = build_controller(cfg, BuiltinEngine(offload=False), fsync=False)
    rainmeter = ThreadRecordingWriter(cfg)
    await rainmeter.start(controller)
    png = b"the output writer's PNG, copied as it is"
    controller.events.emit(FramePublished(41, "p", "keyframe", cfg.output_dir / "gone.png", png))
    await rainmeter.close()
    assert (cfg.output_dir / FRAMES_DIR / "frame_000041.png").read_bytes() == png  # not encoded again
    assert _read(cfg.output_dir / STATUS_INI)["FrameName"] == "frame_000041.png"
    assert rainmeter.threads and threading.get_ident() not in rainmeter.threads


def test_status_line_says_not_ai_and_paused() -> None:
    text = render_ini(
        {
            "state": "paused",
            "pause_reasons": ["game: x.exe"],
            "frames_per_minute": 40.0,
            "backend_is_ai": False,
            "current_prompt": "mist",
            "progress": {"value": 2, "max": 8},
        },
        "frame_000003.png",
    )
    s = _parse_ini(text)
    assert s["StatusLine"] == "paused (game: x.exe) · 40.0/min · not AI · mist"
    assert (s["Paused"], s["Progress"], s["FrameName"]) == ("1", "0.250", "frame_000003.png")


def _parse_ini(text: str) -> dict[str, str]:
    cp = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=(";",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(text)
    return dict(cp[SECTION])


def _read(path: Path) -> dict[str, str]:
    return _parse_ini(path.read_text(encoding="utf-8"))


def _read_lua(path: Path) -> dict[str, str]:
    """status.lua run as Rainmeter's dofile runs it: UTF-16 LE (BOM) to UTF-8, then Lua."""
    data = path.read_bytes()
    assert data.startswith(BOM)
    table = LuaRuntime().execute(data[2:].decode("utf-16-le"))
    return {str(k): str(v) for k, v in table.items()}


def test_status_lua_carries_any_text_as_a_literal() -> None:
    tricky = 'château · 夢 [oil] "quoted" \\ back\\slash ]] --[[ 1\x07'
    s = {"state": "running", "current_prompt": tricky, "updated_at": "2026-12-01T18:00:05+01:00"}
    data = lua_bytes(s, "frame_000001.png")
    table = LuaRuntime().execute(data[2:].decode("utf-16-le"))
    assert table["Prompt"] == " ".join(tricky.split())
    assert table["StatusLine"] == status_line(s)
    assert table["FrameName"] == "frame_000001.png"


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "rainmeter.md").read_text(encoding="utf-8").lower()
    for key in parse(RESOURCES / "Settings.inc")["Variables"]:
        assert f"`{key.lower()}`" in doc, f"docs/rainmeter.md does not explain {key}"


# --- what is wrong, and whether anyone is there: status_line, the new keys, the heartbeat --------

UNREACHABLE = (
    "ComfyUI at http://127.0.0.1:8188 is not answering: connection refused: nothing is listening on "
    "127.0.0.1:8188 (is ComfyUI started?)"
)
FALLBACK = f"{UNREACHABLE}; dreaming with the built-in engine (not AI) until it does"


def health(state: str, reason: str | None) -> dict[str, Any]:
    return {"ok": state == "running", "state": state, "reason": reason, "backend": "comfyui"}


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (
            {"state": "waiting", "backend_is_ai": True, "backend_health": health("waiting", UNREACHABLE)},
            f"waiting · {UNREACHABLE}",
        ),
        (
            {
                "state": "degraded",
                "backend_is_ai": False,
                "frames_per_minute": 40.0,
                "current_prompt": "mist",
                "backend_health": health("degraded", FALLBACK),
            },
            f"degraded · {FALLBACK} · 40.0/min · not AI · mist",
        ),
        (  # the breaker, with ComfyUI still in use
            {
                "state": "degraded",
                "backend_health": health(
                    "degraded",
                    "ComfyUI failed the same way 3 times in a row: out of memory; trying again every 20 s",
                ),
            },
            "degraded · ComfyUI failed the same way 3 times in a row: out of memory; trying again every 20 s",
        ),
        # Paused, the pause is what shows; running, there is nothing to explain.
        (
            {"state": "paused", "pause_reasons": ["user"], "backend_health": health("waiting", UNREACHABLE)},
            "paused (user)",
        ),
        (
            {"state": "running", "current_prompt": "mist", "backend_health": health("running", None)},
            "running · mist",
        ),
        ({"state": "waiting"}, "waiting"),  # (a status without backend_health)
    ],
)
def test_status_line_says_what_is_wrong(status: dict[str, Any], line: str) -> None:
    assert status_line(status) == line
    assert _parse_ini(render_ini(status, None))["StatusLine"] == line


def test_status_ini_has_the_backend_and_the_heartbeat() -> None:
    status = {
        "state": "waiting",
        "backend_health": health("waiting", "ComfyUI at http://x is not answering:\nconnection refused"),
        "updated_at": "2026-12-01T18:00:05+01:00",
        "heartbeat_s": 5.0,
    }
    s = _parse_ini(render_ini(status, None))
    assert s["BackendState"] == "waiting"
    assert s["BackendReason"] == "ComfyUI at http://x is not answering: connection refused"  # one line
    assert s["Updated"] == "2026-12-01T18:00:05+01:00"
    assert s["UpdatedEpoch"] == str(int(datetime(2026, 12, 1, 17, 0, 5, tzinfo=UTC).timestamp()))
    assert s["Heartbeat"] == "5"
    running = _parse_ini(render_ini({"state": "running", "backend_health": health("running", None)}, None))
    assert (running["BackendState"], running["BackendReason"]) == ("running", "")
    # No time, or one that does not parse: no epoch (the skin then trusts State), never a crash.
    assert running["UpdatedEpoch"] == "" and running["Heartbeat"] == "5"
    assert _parse_ini(render_ini({"updated_at": "yesterday"}, None))["UpdatedEpoch"] == ""


@pytest.mark.parametrize("offset", ["+00:00", "+05:30", "-08:00"])
def test_updated_epoch_is_the_same_instant_whatever_the_offset(offset: str) -> None:
    instant = datetime(2026, 12, 1, 17, 0, 0, tzinfo=UTC)
    local = instant.astimezone(datetime.fromisoformat(f"2026-01-01T00:00:00{offset}").tzinfo)
    s = _parse_ini(render_ini({"updated_at": local.isoformat(timespec="seconds")}, None))
    assert s["UpdatedEpoch"] == str(int(instant.timestamp()))


class SnapshotOnly:
    """Just enough of a dream for the writer: no events ever come, time passes."""

    def __init__(self, heartbeat_s: float) -> None:
        self.events = EventBus()
        self.clock = FakeClock()
        self.heartbeat_s = heartbeat_s
        self.snapshots = 0
        self.fifth = asyncio.Event()

    def snapshot(self) -> dict[str, object]:
        self.snapshots += 1
        if self.snapshots >= 5:
            self.fifth.set()
        return {
            "state": "paused",
            "pause_reasons": ["user"],
            "updated_at": f"2026-12-01T17:00:{self.snapshots % 60:02d}+00:00",
            "heartbeat_s": self.heartbeat_s,
        }


async def test_status_ini_is_rewritten_every_heartbeat_without_events(tmp_path: Path) -> None:
    # Paused, nothing happens: the skin must still see a living service (UpdatedEpoch moves on).
    cfg = dream_config(tmp_path)
    dream = SnapshotOnly(heartbeat_s=0.05)
    rainmeter = RainmeterWriter(cfg)
    await rainmeter.start(dream)  # type: ignore[arg-type]
    ini_path = cfg.output_dir / STATUS_INI
    first = _read(ini_path)["UpdatedEpoch"]
    try:
        await hang_guard(dream.fifth.wait(), 5)  # 100 heartbeats: plenty on a busy box
    finally:
        await rainmeter.close()
    s = _read(ini_path)
    assert s["UpdatedEpoch"] != first
    assert s["Heartbeat"] == "0.05"
    assert s["StatusLine"] == "paused (user)"
