"""Rainmeter's reading rules, mimicked for tests (there is no Rainmeter here). Each rule is the one
read in Rainmeter's source; docs/rainmeter.md lists them with their files.

* Skin files (.ini/.inc): the profile API reads UTF-16 LE when the file starts with FF FE, else the
  ANSI code page (cp1252 here, a Western Windows). UTF-8 is never read as UTF-8.
* Lua scripts (LuaScript.cpp): FF FE makes the script Unicode; its text is converted to UTF-8
  before Lua loads it. Strings crossing between Rainmeter (wide) and Lua (bytes) are UTF-8 in a
  Unicode script, ANSI otherwise: options, variables, bangs, the value Update() returns.
* dofile (LuaGlobal.cpp): opens the path with the wide API (the path's bytes decoded as above),
  applies the same BOM rule to the file, runs it in the script's environment, returns its values;
  a file it cannot open is logged and yields nothing.
* io.open (liolib.c): the C library's fopen, which reads the path's bytes in the ANSI code page.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lupa.lua51 import LuaRuntime  # Rainmeter's Lua is 5.1

BOM = b"\xff\xfe"
ANSI = "cp1252"


def read_skin_file(data: bytes) -> str:
    """A .ini/.inc as Rainmeter's ConfigParser gets it."""
    if data.startswith(BOM):
        return data[2:].decode("utf-16-le")
    return data.decode(ANSI, errors="replace")


def parse_skin_file(data: bytes) -> configparser.ConfigParser:
    """Rainmeter's dialect: ';' comments, no inline comments, '=' only, keys as written."""
    cp = configparser.ConfigParser(
        interpolation=None, delimiters=("=",), comment_prefixes=(";",), inline_comment_prefixes=None
    )
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(read_skin_file(data))
    return cp


def expand(value: str, variables: dict[str, str]) -> str:
    """#Name# as Rainmeter expands it (variables are case-insensitive, nesting allowed)."""
    by_lower = {k.lower(): v for k, v in variables.items()}
    for _ in range(5):
        value = re.sub(r"#([\w@]+)#", lambda m: by_lower.get(m.group(1).lower(), m.group(0)), value)
    return value


class Measure:
    """A measure as a script sees it through SKIN:GetMeasure (RunCommand: number and string value)."""

    def __init__(self) -> None:
        self.value = -1.0  # RunCommand before its first run
        self.output = ""


class LuaScript:
    """A skin's Lua script measure, loaded the way Rainmeter loads it."""

    def __init__(
        self,
        script: bytes,
        *,
        options: dict[str, str],
        variables: dict[str, str],
        measures: dict[str, Measure] | None = None,
        clock: Callable[[], int],
    ) -> None:
        self.unicode = script.startswith(BOM)
        source = script[2:].decode("utf-16-le").encode("utf-8") if self.unicode else script
        self.options = options
        self.variables = dict(variables)
        self.measures = measures or {}
        self.bangs: list[list[str]] = []
        self.log: list[str] = []
        self.lua = LuaRuntime(encoding=None)  # strings cross as bytes, as in Rainmeter
        g = self.lua.globals()
        g.os[b"time"] = clock
        make = self.lua.eval(b"""
            function(get_variable, get_option, bang, get_measure, read_file, open_ansi)
              local skin = {}
              function skin:GetVariable(name) return get_variable(name) end
              function skin:Bang(...) bang({...}) end
              function skin:GetMeasure(name)
                local m = get_measure(name)
                if not m then return nil end
                return {GetValue = function(self) return m.value end,
                        GetStringValue = function(self) return m.output end}
              end
              local self_ = {}
              function self_:GetOption(name) return get_option(name) end
              local function dofile_(path)
                local chunk = read_file(path)
                if not chunk then return end
                return assert(loadstring(chunk))()
              end
              local function open_(path, mode)
                local text = open_ansi(path)
                if not text then return nil, path .. ': No such file or directory' end
                return {read = function(self) return text end, close = function(self) end}
              end
              return skin, self_, dofile_, open_
            end
        """)
        skin, self_, dofile, io_open = make(
            self._get_variable, self._get_option, self._bang, self._get_measure, self._dofile, self._fopen
        )
        g.SKIN, g.SELF, g.dofile = skin, self_, dofile
        g.io[b"open"] = io_open
        self.lua.execute(source)
        g.Initialize()

    # Rainmeter <-> Lua strings: UTF-8 in a Unicode script, the ANSI code page otherwise.
    def to_lua(self, text: str) -> bytes:
        return text.encode("utf-8") if self.unicode else text.encode(ANSI, errors="replace")

    def from_lua(self, data: bytes) -> str:
        return data.decode("utf-8") if self.unicode else data.decode(ANSI, errors="replace")

    def _get_variable(self, name: bytes) -> bytes | None:
        wanted = self.from_lua(name).lower()
        value = next((v for k, v in self.variables.items() if k.lower() == wanted), None)
        return None if value is None else self.to_lua(value)

    def _get_option(self, name: bytes) -> bytes:
        wanted = self.from_lua(name).lower()
        return self.to_lua(next((v for k, v in self.options.items() if k.lower() == wanted), ""))

    def _bang(self, args: Any) -> None:
        words = [self.from_lua(args[i]) for i in range(1, len(args) + 1)]
        self.bangs.append(words)
        if words[0] == "!SetVariable":
            self.variables[words[1]] = words[2]

    def _get_measure(self, name: bytes) -> Any:
        measure = self.measures.get(self.from_lua(name))
        if measure is None:
            return None
        return self.lua.table_from({b"value": measure.value, b"output": self.to_lua(measure.output)})

    @staticmethod
    def _wide(path: str) -> Path:
        return Path(path.replace("\\", "/"))

    def _dofile(self, path: bytes) -> bytes | None:
        wide = self._wide(self.from_lua(path))  # the wide API: any character
        try:
            data = wide.read_bytes()
        except OSError:
            self.log.append(f"Script: Unable to open the file: {wide}")
            return None
        return data[2:].decode("utf-16-le").encode("utf-8") if data.startswith(BOM) else data

    def _fopen(self, path: bytes) -> bytes | None:
        ansi = self._wide(path.decode(ANSI, errors="replace"))  # fopen: the bytes in the ANSI code page
        try:
            return ansi.read_bytes()
        except OSError:
            return None

    # --- what the skin calls ---------------------------------------------------------------

    def update(self) -> str:
        """One tick: Update()'s string as Rainmeter reads it."""
        return self.from_lua(self.lua.globals().Update())

    def run(self, code: str) -> None:
        """!CommandMeasure MeasureDream "code" (LuaScript::RunString: narrowed like every string)."""
        self.lua.execute(self.to_lua(code))

    def var(self, name: str) -> str | None:
        return self.variables.get(name)

    def bangs_named(self, bang: str) -> list[list[str]]:
        return [b for b in self.bangs if b[0] == bang]


class InstalledSkin:
    """An installed skin folder loaded as Rainmeter loads it: the .ini and its @Include decoded by
    the profile API's rules, [MeasureDream]'s options expanded, the script loaded."""

    def __init__(self, folder: Path, *, clock: Callable[[], int], **overrides: str) -> None:
        self.folder = folder
        resources = folder / "@Resources"
        self.ini = parse_skin_file((folder / "DreamWindow.ini").read_bytes())
        self.settings = parse_skin_file((resources / "Settings.inc").read_bytes())
        variables = dict(self.settings["Variables"])
        variables |= {k: v for k, v in self.ini["Variables"].items() if k.lower() != "@include"}
        variables |= overrides
        variables["@"] = f"{resources}\\"
        self.variables = {k: expand(v, variables) for k, v in variables.items()}
        options = {k: expand(v, self.variables) for k, v in self.ini["MeasureDream"].items()}
        script = Path(options["ScriptFile"].replace("\\", "/"))
        self.measures = {
            name: Measure() for name in self.ini.sections() if self.ini[name].get("Plugin") == "RunCommand"
        }
        self.script = LuaScript(
            script.read_bytes(),
            options=options,
            variables=self.variables,
            measures=self.measures,
            clock=clock,
        )
