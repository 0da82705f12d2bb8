"""How every file the skin reads is encoded, and why (the rules are Rainmeter's, read in its source).

* **Skin files (.ini, .inc)** are read by Rainmeter's ConfigParser through the Win32 profile API
  (``GetPrivateProfileSection``): a file that starts with the UTF-16 LE byte-order mark is read as
  UTF-16, anything else in the ANSI code page. UTF-8 is *not* read as UTF-8. So ``DreamWindow.ini``
  and ``Settings.inc`` (which holds the user's output folder, maybe ``C:\\Users\\José\\…``) are
  written UTF-16 LE with a BOM.
* **The Lua script** is treated as Unicode only when it starts with the UTF-16 LE BOM
  (``Library/lua/LuaScript.cpp``): Rainmeter converts it to UTF-8 before Lua sees it, hands the
  script every option and variable as UTF-8 and reads back every string it returns as UTF-8.
  Without the BOM all of that goes through the ANSI code page, and the UTF-8 " · " of the status
  line comes out as "Â·". So ``DreamWindow.lua`` is written UTF-16 LE with a BOM.
* **The status** is not read with ``io.open``: Rainmeter's Lua ``io.open`` is the C library's
  ``fopen`` (ANSI code page), which cannot open a path with characters outside it, and in a
  Unicode script it is handed UTF-8 bytes, so *any* non-ASCII path fails. Rainmeter's own
  ``dofile`` opens the file with the wide API and applies the same BOM rule as for scripts, so the
  core writes ``status.lua`` (a table of string literals, UTF-16 LE with a BOM) and the skin runs
  it with ``dofile``. ``status.ini`` (UTF-8) stays for other readers.

The source files in the package are plain ASCII so they stay readable in a diff; they are
encoded here when they are installed or packaged.
"""

from __future__ import annotations

import codecs
import locale
import sys

BOM_UTF16_LE = codecs.BOM_UTF16_LE  # b"\xff\xfe"
BOM_UTF8 = codecs.BOM_UTF8


def rainmeter_text(text: str) -> bytes:
    """``text`` as Rainmeter reads a Unicode skin file or script: UTF-16 LE, BOM, CRLF lines."""
    body = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return BOM_UTF16_LE + body.encode("utf-16-le")


def ansi_code_page() -> str:
    """The code page Windows reads a BOM-less file in (cp1252 on Western systems; elsewhere we
    only ever need a stand-in, and cp1252 is the common one)."""
    if sys.platform == "win32":
        return locale.getencoding()
    return "cp1252"


def read_skin_text(data: bytes) -> str:
    """A skin file a user may have edited, decoded as Rainmeter would (UTF-16 LE with BOM, else the
    ANSI code page). A UTF-8 BOM is honoured too: Rainmeter would misread it, but what the user
    meant is plain, and the re-install rewrites it as UTF-16."""
    if data.startswith(BOM_UTF16_LE):
        return data[2:].decode("utf-16-le")
    if data.startswith(BOM_UTF8):
        return data[3:].decode("utf-8")
    return data.decode(ansi_code_page(), errors="replace")


def lua_string(value: str) -> str:
    """A Lua 5.1 string literal for ``value``: quotes, backslashes and control characters escaped
    (decimal escapes, the only kind Lua 5.1 has); other characters as they are (the file is UTF-16,
    Rainmeter hands Lua UTF-8)."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):03d}")  # 3 digits: a digit after it is not read into it
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
