"""A preview of the skin for the README, drawn by a test: a real short dream, the installed skin's
Lua run on the status it wrote (rainmeter_like.py), and the skin's meters drawn with Pillow from
DreamWindow.ini's own options (positions, sizes, colours, font size, the frame the script chose).

It is a preview drawn from the skin's definitions, not a Rainmeter capture (there is no Windows
here): the font is DejaVu Sans standing in for Segoe UI. Written to docs/rainmeter-preview.png
when DREAM_WINDOW_SCREENSHOTS=1, else into the test's temp folder; checked either way.
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dream_window.app import build_controller
from dream_window.backends.builtin import BuiltinEngine
from dream_window.rainmeter import RainmeterWriter
from dream_window.rainmeter.install import install_skin
from tests.rainmeter.rainmeter_like import InstalledSkin, expand
from tests.web.conftest import dream_config

DOCS = Path(__file__).resolve().parents[2] / "docs"
PROMPT = "a lighthouse over a violet sea, oil painting"


def number(value: str, variables: dict[str, str]) -> int:
    """A meter option as Rainmeter reads it: variables expanded, a (formula) evaluated."""
    text = expand(value, variables).strip()
    assert re.fullmatch(r"[\d+\-*/(). ]+", text), f"not a number or formula: {text}"
    return int(eval(text, {"__builtins__": {}}))  # digits and + - * / ( ) only, checked above


def run_fade(skin: InstalledSkin) -> None:
    """[MeasureFade] (ActionTimer) played to its end: the list the script executed last, its
    action's !SetVariable formula applied Repeat times (Clamp and Ceil as Rainmeter's formulas)."""
    executes = [
        b for b in skin.script.bangs_named("!CommandMeasure") if b[1] == "MeasureFade" and "Execute" in b[2]
    ]
    assert executes, "the script started no fade"
    fade, v = skin.ini["MeasureFade"], skin.script.variables
    listed = expand(fade[f"ActionList{executes[-1][2].split()[1]}"], v)
    m = re.fullmatch(r"Repeat (\w+), *(\d+), *(\d+)", listed)
    assert m, listed
    action, times = m.group(1), int(m.group(3))
    setter = re.match(r'\[!SetVariable (\w+) "(.*?)"\]', fade[action])
    assert setter, fade[action]
    functions = {"Clamp": lambda x, lo, hi: max(lo, min(hi, x)), "Ceil": math.ceil}
    for _ in range(times):
        formula = expand(setter.group(2), v)
        assert re.fullmatch(r"[\d+\-*/(). ,ClampCei]+", formula), formula
        v[setter.group(1)] = str(int(eval(formula, {"__builtins__": {}}, functions)))


def colour(value: str, variables: dict[str, str]) -> tuple[int, ...]:
    parts = tuple(int(p) for p in expand(value, variables).split(","))
    return parts if len(parts) == 4 else (*parts, 255)


def font(points: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    size = round(points * 96 / 72)  # Rainmeter's FontSize is in points, at 96 dpi
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


def draw_skin(skin: InstalledSkin, line: str) -> Image.Image:
    ini, v = skin.ini, skin.script.variables
    shape = expand(ini["MeterBackground"]["Shape"], v)
    m = re.match(r"Rectangle ([^|]+)\|\s*Fill Color ([\d,]+)", shape)
    assert m, shape
    x, y, w, h, radius = (number(p, v) for p in re.findall(r"\([^)]*\)|[^,]+", m.group(1)))
    canvas = Image.new("RGBA", (x + w, y + h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rounded_rectangle((x, y, x + w - 1, y + h - 1), radius=radius, fill=colour(m.group(2), v))
    for meter in ("MeterFrameA", "MeterFrameB"):  # A under B, as in the file
        options = ini[meter]
        name = expand(options["ImageName"], v)
        if not name:
            continue
        alpha = number(options.get("ImageAlpha", "255"), v)
        box = [number(options[k], v) for k in ("X", "Y", "W", "H")]
        with Image.open(name.replace("\\", "/")) as frame:
            picture = frame.convert("RGBA")
        if options.get("PreserveAspectRatio") == "1":  # letterboxed, centred
            scale = min(box[2] / picture.width, box[3] / picture.height)
            size = (round(picture.width * scale), round(picture.height * scale))
            picture = picture.resize(size, Image.Resampling.LANCZOS)
            at = (box[0] + (box[2] - size[0]) // 2, box[1] + (box[3] - size[1]) // 2)
        else:
            picture = picture.resize((box[2], box[3]), Image.Resampling.LANCZOS)
            at = (box[0], box[1])
        picture.putalpha(picture.getchannel("A").point(lambda a, alpha=alpha: a * alpha // 255))
        canvas.alpha_composite(picture, at)
    for meter, text in (("MeterStatus", line), ("MeterNext", expand(ini["MeterNext"]["Text"], v))):
        options = ini[meter]
        if number(options.get("Hidden", "0"), v):
            continue
        typeface = font(number(options["FontSize"], v))
        left, top = number(options["X"], v), number(options["Y"], v)
        if "W" in options and options.get("ClipString") == "1":  # clipped to its width
            width = number(options["W"], v)
            while text and draw.textlength(text, font=typeface) > width:
                text = text[:-1]
        draw.text((left, top), text, font=typeface, fill=colour(options["FontColor"], v))
    return canvas


async def test_preview_of_the_skin_showing_a_real_dream(tmp_path: Path) -> None:
    cfg = dream_config(tmp_path / "dream", generation={"width": 256, "height": 384})
    skins = tmp_path / "Skins"
    skins.mkdir()
    folder = install_skin(skins, cfg).target
    backend = BuiltinEngine()
    await backend.start()
    controller = build_controller(cfg, backend, fsync=False, max_frames=2)
    writer = RainmeterWriter(cfg)
    await writer.start(controller)
    await controller.set_prompt(PROMPT)
    await controller.run()
    await writer.close()
    preview(folder, cfg.output_dir, controller.output.current_path, tmp_path)


def preview(folder: Path, output_dir: Path, current: Path, tmp_path: Path) -> None:
    now = int(datetime.now(UTC).timestamp())
    skin = InstalledSkin(folder, clock=lambda: now)
    line = skin.script.update()
    assert line == f"stopped - {PROMPT}"
    # Show it as it looks while it runs: the same status, read again as "running".
    status_lua = output_dir / "rainmeter" / "status.lua"
    text = status_lua.read_bytes()[2:].decode("utf-16-le")
    text = re.sub(r'State = "[^"]*"', 'State = "running"', text)
    text = re.sub(r'StatusLine = "[^"]*"', f'StatusLine = "running · 40.0/min · {PROMPT}"', text)
    status_lua.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    line = skin.script.update()
    assert line == f"running · 40.0/min · {PROMPT}"

    run_fade(skin)
    assert skin.script.var("AlphaB") == "255"  # the fade has ended: the new frame fully shown
    image = draw_skin(skin, line)
    v = skin.script.variables
    width, height = number("#Width#", v), number("(#Height#+#StatusHeight#*#ShowStatus#)", v)
    assert image.size == (width, height)
    # The picture is the frame the script chose, letterboxed into Width x Height.
    shown = Path(str(skin.script.var("FrameB")).replace("\\", "/"))
    assert shown.read_bytes() == current.read_bytes()
    with Image.open(shown) as frame:
        centre = frame.convert("RGBA").getpixel((frame.width // 2, frame.height // 2))
    drawn = image.getpixel((width // 2, number("#Height#", v) // 2))
    assert all(abs(a - b) <= 24 for a, b in zip(drawn[:3], centre[:3], strict=True)), (drawn, centre)
    # The status strip has text in the status colour.
    strip = np.asarray(image.crop((0, number("#Height#", v), width, height)).convert("RGB"), dtype=int)
    text_colour = np.array(colour(v["StatusColor"], v)[:3])
    assert (np.abs(strip - text_colour) <= 40).all(axis=-1).any(), "no status text drawn"

    out = DOCS if os.environ.get("DREAM_WINDOW_SCREENSHOTS") == "1" else tmp_path
    image.save(out / "rainmeter-preview.png")
    with Image.open(out / "rainmeter-preview.png") as saved:
        assert saved.size == image.size
