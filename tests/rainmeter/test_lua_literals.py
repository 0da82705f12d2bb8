"""status.lua is run by Rainmeter (dofile), so every value in it must come back as the same text
and nothing in a prompt may become code: Lua 5.1 string literals, checked against real Lua."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from lupa.lua51 import LuaRuntime

from dream_window.rainmeter.encoding import BOM_UTF16_LE, lua_string
from dream_window.rainmeter.status_ini import lua_bytes

# Any text Python can encode (lone surrogates cannot be written to a file at all).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_every_text_comes_back_from_lua_as_written(text: str) -> None:
    lua = LuaRuntime(encoding=None)  # bytes in, bytes out, as Rainmeter hands Lua UTF-8
    assert lua.execute(b"return " + lua_string(text).encode("utf-8")) == text.encode("utf-8")


def test_a_prompt_that_tries_to_leave_its_string_stays_text() -> None:
    sly = 'a castle" } os.exit(1) pwned = true --[[ ]] \\" \\'
    data = lua_bytes({"state": "running", "current_prompt": sly}, "frame_000001.png")
    assert data.startswith(BOM_UTF16_LE)
    lua = LuaRuntime(encoding=None)
    # Decoded as Rainmeter's dofile reads a UTF-16 file: to UTF-8, then run.
    table = lua.execute(data[2:].decode("utf-16-le").encode("utf-8"))
    assert table[b"Prompt"].decode("utf-8") == sly
    assert lua.eval("pwned") is None  # nothing in the prompt ran
