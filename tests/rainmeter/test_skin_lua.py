"""The installed skin, read and run the way Rainmeter reads and runs it (rainmeter_like.py): every
file decoded by Rainmeter's rules, the Lua loaded in lupa as a Unicode (BOM) script, the status
read with dofile, with a non-ASCII output folder and prompt."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.config import DreamConfig
from dream_window.rainmeter import FRAMES_DIR, STATUS_LUA, RainmeterWriter, lua_bytes, status_line
from dream_window.rainmeter.install import install_skin, skin_source
from tests.rainmeter.rainmeter_like import BOM, InstalledSkin, LuaScript, read_skin_file
from tests.web.conftest import dream_config

NOW = 1_800_000_000  # os.time() in the skin, Unix seconds
PROMPT = "château · 夢 [oil]"
UNREACHABLE = "ComfyUI at http://127.0.0.1:8188 is not answering: connection refused"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def config(tmp_path: Path) -> DreamConfig:
    # A folder no ANSI code page holds all of: the skin must still find it.
    return dream_config(tmp_path / "sortie château 夢")


def install(tmp_path: Path, cfg: DreamConfig) -> Path:
    skins = tmp_path / "Skins"
    skins.mkdir()
    return install_skin(skins, cfg).target


def write_status(cfg: DreamConfig, *, age: int | None, frame: str | None = None, **status: Any) -> None:
    """status.lua as the core writes it, ``age`` seconds old by the skin's clock (None: no time)."""
    if age is not None:
        status["updated_at"] = datetime.fromtimestamp(NOW - age, UTC).isoformat(timespec="seconds")
    folder = cfg.output_dir / FRAMES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATUS_LUA).write_bytes(lua_bytes(status, frame))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[DreamConfig, Path, Clock]:
    cfg = config(tmp_path)
    return cfg, install(tmp_path, cfg), Clock()


def test_every_installed_text_file_is_utf16_with_a_bom(setup: tuple[DreamConfig, Path, Clock]) -> None:
    cfg, folder, _ = setup
    for path in (
        folder / "DreamWindow.ini",
        folder / "@Resources/Settings.inc",
        folder / "@Resources/Scripts/DreamWindow.lua",
    ):
        data = path.read_bytes()
        assert data.startswith(BOM), path
        text = read_skin_file(data)
        relative = path.relative_to(folder).as_posix()
        if relative != "@Resources/Settings.inc":  # the others are the sources, re-encoded
            assert text.replace("\r\n", "\n") == (skin_source() / relative).read_text(encoding="ascii")
    settings = read_skin_file((folder / "@Resources/Settings.inc").read_bytes())
    expected = str(cfg.output_dir.resolve()).replace("/", "\\") + "\\"
    assert f"OutputDir={expected}\r\n" in settings
    assert "château 夢" in expected
    # What a UTF-8 Settings.inc would have given (ANSI reading): the folder garbled.
    assert "chÃ¢teau" in read_skin_file(settings.encode("utf-8"))


def test_status_line_prompt_and_frame_reach_the_skin_intact(setup: tuple[DreamConfig, Path, Clock]) -> None:
    cfg, folder, clock = setup
    frames = cfg.output_dir / FRAMES_DIR
    frames.mkdir(parents=True)
    (frames / "frame_000009.png").write_bytes(b"png")
    status = {"state": "running", "frames_per_minute": 40.0, "current_prompt": PROMPT, "heartbeat_s": 5.0}
    write_status(cfg, age=0, frame="frame_000009.png", **status)
    skin = InstalledSkin(folder, clock=clock).script
    assert skin.unicode  # the BOM made it a Unicode script
    line = skin.update()
    assert line == status_line(status) == f"running · 40.0/min · {PROMPT}"
    shown = skin.var("FrameB")
    assert shown is not None and Path(shown.replace("\\", "/")).read_bytes() == b"png"
    assert not skin.log  # dofile opened the non-ASCII path


def ansi_script(installed: InstalledSkin, clock: Clock) -> LuaScript:
    """The same script without its BOM: what Rainmeter did with the skin before the fix."""
    source = (skin_source() / "@Resources/Scripts/DreamWindow.lua").read_bytes()
    return LuaScript(source, options=installed.script.options, variables=installed.variables, clock=clock)


def test_without_the_bom_the_script_loses_the_non_ascii_folder(
    setup: tuple[DreamConfig, Path, Clock],
) -> None:
    """The bug the BOM fixes, shown with the same rules: an ANSI script gets the folder's name in
    cp1252, which has no 夢, so it cannot find the status at all."""
    cfg, folder, clock = setup
    write_status(cfg, age=0, state="running", current_prompt=PROMPT, heartbeat_s=5.0)
    ansi = ansi_script(InstalledSkin(folder, clock=clock), clock)
    assert not ansi.unicode
    assert ansi.update().startswith("dream-window is not running (no ")
    # and io.open (fopen: the path's bytes in the ANSI code page) cannot open the UTF-8 name either
    unicode_path = str(cfg.output_dir / FRAMES_DIR / STATUS_LUA).encode("utf-8")
    assert ansi.lua.eval(b"io.open")(unicode_path)[0] is None


def test_without_the_bom_the_middle_dot_is_garbled(tmp_path: Path) -> None:
    cfg = dream_config(tmp_path / "plain")
    folder = install(tmp_path, cfg)
    clock = Clock()
    write_status(cfg, age=0, state="running", current_prompt="mist", heartbeat_s=5.0)
    installed = InstalledSkin(folder, clock=clock)
    assert installed.script.update() == "running · mist"
    assert ansi_script(installed, clock).update() == "running Â· mist"


async def test_a_real_dream_shown_by_the_installed_skin(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    folder = install(tmp_path, cfg)
    backend = BuiltinEngine()
    await backend.start()
    controller = build_controller(cfg, backend, fsync=False, max_frames=3)
    writer = RainmeterWriter(cfg)
    await writer.start(controller)
    await controller.set_prompt(PROMPT)
    await controller.run()
    await writer.close()
    shows_the_last_frame(folder, controller.output.current_path)


def shows_the_last_frame(folder: Path, current: Path) -> None:
    clock = Clock()
    clock.now = int(datetime.now(UTC).timestamp())
    skin = InstalledSkin(folder, clock=clock).script
    line = skin.update()
    assert line == f"stopped - {PROMPT}"  # the service said it stopped, with the prompt on screen
    assert skin.var("DreamState") == "stopped"
    shown = Path(str(skin.var("FrameB")).replace("\\", "/"))
    assert shown.read_bytes() == current.read_bytes()


# --- staleness: "stopped" when the status is older than 3 intervals -------------------------------


def test_skin_says_stopped_when_the_status_is_stale(setup: tuple[DreamConfig, Path, Clock]) -> None:
    cfg, folder, clock = setup
    write_status(cfg, age=3600, state="running", current_prompt="mist", heartbeat_s=5.0)
    installed = InstalledSkin(folder, clock=clock)
    skin = installed.script
    assert skin.update() == "stopped - dream-window is not running (last update 60 min ago)"
    assert skin.var("DreamState") == "stopped"
    assert skin.var("StatusColor") == installed.variables["AlertColor"]
    write_status(
        cfg,
        age=1,
        state="degraded",
        backend_is_ai=False,
        heartbeat_s=5.0,
        backend_health={"state": "degraded", "reason": UNREACHABLE},
    )
    assert skin.update() == f"degraded · {UNREACHABLE} · not AI"
    write_status(cfg, age=0, state="running", current_prompt="mist", heartbeat_s=5.0)
    assert skin.update() == "running · mist"
    assert (skin.var("DreamState"), skin.var("StatusColor")) == ("running", installed.variables["TextColor"])


@pytest.mark.parametrize(
    ("age", "heartbeat", "update_ms", "stale"),
    [
        (0, 5.0, "500", False),
        (15, 5.0, "500", False),
        (16, 5.0, "500", True),
        (7, 2.0, "500", True),  # 3 x 2 s
        (59, 5.0, "20000", False),  # a slow skin waits for three of its own ticks
        (61, 5.0, "20000", True),
        (-600, 5.0, "500", False),  # written "in the future": the clock was set back; fresh
        (None, 5.0, "500", False),  # no UpdatedEpoch (an older core): State is trusted
    ],
)
def test_skin_staleness_is_three_intervals(
    setup: tuple[DreamConfig, Path, Clock], age: int | None, heartbeat: float, update_ms: str, stale: bool
) -> None:
    cfg, folder, clock = setup
    write_status(cfg, age=age, state="paused", pause_reasons=["user"], heartbeat_s=heartbeat)
    skin = InstalledSkin(folder, clock=clock, UpdateMs=update_ms).script
    line = skin.update()
    assert skin.var("DreamState") == ("stopped" if stale else "paused"), line
    assert line.startswith("stopped - dream-window is not running") is stale, line
    assert skin.var("PauseAction") == "resume"


def test_without_a_status_the_skin_says_so_and_retries_every_ten_seconds(
    setup: tuple[DreamConfig, Path, Clock],
) -> None:
    cfg, folder, clock = setup
    skin = InstalledSkin(folder, clock=clock).script
    assert skin.update().startswith("dream-window is not running (no ")
    assert skin.var("DreamState") == "stopped"
    assert len(skin.log) == 1  # Rainmeter logs a dofile it cannot open ...
    skin.update()
    assert len(skin.log) == 1  # ... so the next try waits
    write_status(cfg, age=0, state="running", current_prompt="mist", heartbeat_s=5.0)
    clock.now += 10
    assert skin.update() == "running · mist"


# --- clicks: a failure shows on the status line ---------------------------------------------------


def clicked(
    setup: tuple[DreamConfig, Path, Clock], name: str, value: float, output: str
) -> tuple[Any, InstalledSkin]:
    cfg, folder, clock = setup
    write_status(cfg, age=0, state="running", current_prompt="mist", heartbeat_s=5.0)
    installed = InstalledSkin(folder, clock=clock)
    skin = installed.script
    assert skin.update() == "running · mist"
    skin.run(f"Click('{name}')")
    assert ["!CommandMeasure", f"Measure{name}", "Run"] in skin.bangs
    installed.measures[f"Measure{name}"].value = value
    installed.measures[f"Measure{name}"].output = output
    skin.run(f"Finished('{name}')")  # the measure's FinishAction
    return skin, installed


@pytest.mark.parametrize(
    ("name", "value", "output", "message"),
    [
        ("Pause", 103, "", "pause failed: curl.exe not found"),
        ("Skip", 1, "HTTP 000", "skip failed: nothing answers at http://127.0.0.1:8765"),
        ("Like", 1, "", "like failed: nothing answers at"),
        ("Skip", 1, "HTTP 401", "skip failed: refused (HTTP 401): set Token in Settings.inc"),
        ("Skip", 1, "HTTP 500", "skip failed: dream-window answered HTTP 500"),
    ],
)
def test_a_failed_click_says_why_for_a_few_seconds(
    setup: tuple[DreamConfig, Path, Clock], name: str, value: float, output: str, message: str
) -> None:
    skin, installed = clicked(setup, name, value, output)
    line = skin.update()
    assert line.startswith(message), line
    assert skin.var("StatusColor") == installed.variables["AlertColor"]
    setup[2].now += 7
    assert skin.update() == "running · mist"
    assert skin.var("StatusColor") == installed.variables["TextColor"]


def test_a_click_that_works_changes_nothing_on_the_line(setup: tuple[DreamConfig, Path, Clock]) -> None:
    skin, _ = clicked(setup, "Skip", 1, "HTTP 200")
    assert skin.update() == "running · mist"


def test_a_click_that_never_finishes_times_out(setup: tuple[DreamConfig, Path, Clock]) -> None:
    cfg, folder, clock = setup
    write_status(cfg, age=0, state="running", current_prompt="mist", heartbeat_s=5.0)
    installed = InstalledSkin(folder, clock=clock)
    skin = installed.script
    skin.run("Click('Pause')")
    installed.measures["MeasurePause"].value = 0  # running
    clock.now += 5
    assert skin.update() == "running · mist"
    clock.now += 8
    assert skin.update().startswith("pause failed: no answer in 12 s")
