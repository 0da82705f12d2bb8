"""The Rainmeter part: the files the core writes for the skin, the skin itself, and installing it.

Module map::

    status_ini.py  RainmeterWriter (a Service): status.ini, status.lua and numbered frames
    encoding.py    how each file the skin reads is encoded, and why (Rainmeter's rules)
    install.py     finding the user's Skins folder; copying the skin; writing Settings.inc (merged)
    rmskin.py      the .rmskin package (Rainmeter's installer format)
    skin/          the skin's source files (plain ASCII; encoded when installed or packaged)
"""

from dream_window.rainmeter.status_ini import (
    FRAMES_DIR,
    KEEP,
    SECTION,
    STATUS_INI,
    STATUS_LUA,
    RainmeterWriter,
    lua_bytes,
    render_ini,
    render_lua,
    status_fields,
    status_line,
)

__all__ = [
    "FRAMES_DIR",
    "KEEP",
    "SECTION",
    "STATUS_INI",
    "STATUS_LUA",
    "RainmeterWriter",
    "lua_bytes",
    "render_ini",
    "render_lua",
    "status_fields",
    "status_line",
]
