"""The text files people write by hand (config.yaml, prompts files): bytes in, text or data out.

Such a file may come from any editor on any system, or be hostile. Both readers here refuse what
they cannot read with one :class:`~dream_window.errors.ConfigError` line naming the file, and
refuse it before it can cost much time or memory:

- :func:`read_text_file` reads bytes and decodes them: UTF-8 (with or without a BOM), UTF-16 and
  UTF-32 with a BOM (Windows PowerShell 5's ``>`` writes UTF-16 LE with one), UTF-16 without one
  (NUL every other byte). Anything else is refused, saying what it looks like (Latin-1, binary).
- :func:`load_yaml` parses YAML with :class:`yaml.SafeLoader`, refusing duplicate keys, documents
  nested deeper than :data:`MAX_DEPTH`, and documents of more than :data:`MAX_VALUES` values once
  aliases are expanded ("billion laughs") — all before anyone walks the data.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dream_window.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 50
# Values (scalars, lists, mappings) in one document, aliases expanded. A real config has a few hundred.
MAX_VALUES = 50_000
# Digits of a number: real ones are short, and very long ones are slow to convert (sexagesimal
# ``1:2:3:...`` is quadratic) or refused by Python's int() limit.
MAX_NUMBER_CHARS = 100

_BOMS = (  # UTF-32 first: its LE BOM starts with UTF-16 LE's
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def read_text_file(path: Path, *, what: str, max_bytes: int = MAX_CONFIG_BYTES, missing: str = "") -> str:
    """The text of ``path``. ``what`` names the file in messages ("config file", "prompts.file");
    ``missing`` replaces the message for a file that does not exist."""
    label = f"{what} {path}"
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(missing or f"{label} does not exist", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {label}: {exc.strerror or exc}", path=str(path)) from None
    if len(data) > max_bytes:
        raise ConfigError(
            f"{label} is larger than {max_bytes // 1024} KiB; is it the right file?", path=str(path)
        )
    return decode_text(data, label=label, path=str(path))


def decode_text(data: bytes, *, label: str, path: str | None = None) -> str:
    """``data`` as text (see the module docstring); ConfigError naming ``label`` otherwise."""
    encoding, body = _sniff(data)
    if encoding is None:
        raise ConfigError(f"{label} is not a text file (it holds NUL bytes)", path=path)
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding != "utf-8":
            raise ConfigError(
                f"{label} is not valid {encoding.upper()} text; save it as UTF-8", path=path
            ) from None
        raise ConfigError(
            f"{label} is not UTF-8 text ({_looks_like(body, exc.start)}); save it as UTF-8", path=path
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{label} is not a text file (it holds NUL characters)", path=path)
    return text


def _sniff(data: bytes) -> tuple[str | None, bytes]:
    """(encoding, the bytes after any BOM); encoding None: binary."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, data[len(bom) :]
    if b"\x00" not in data:
        return "utf-8", data
    # UTF-16 without a BOM: mostly-ASCII text has a NUL in every other byte, on one side.
    if len(data) % 2 == 0:
        pairs = len(data) // 2
        even = data[0::2].count(0)
        odd = data[1::2].count(0)
        if odd >= pairs * 0.3 and even <= odd // 10:
            return "utf-16-le", data
        if even >= pairs * 0.3 and odd <= even // 10:
            return "utf-16-be", data
    return None, data


def _looks_like(data: bytes, pos: int) -> str:
    byte = data[pos]
    line = data.count(b"\n", 0, pos) + 1
    where = f"byte 0x{byte:02X} on line {line}, at position {pos}"
    sample = data[:65536]
    controls = sum(1 for b in sample if b < 32 and b not in b"\t\n\r\x0c")
    if controls > len(sample) // 100:
        return f"{where}: it looks like a binary file"
    return f"{where}: it looks like Latin-1/Windows-1252 or another legacy encoding"


# --- YAML ---------------------------------------------------------------------------------------


class YAMLRefused(yaml.MarkedYAMLError):
    """A document :func:`load_yaml` refuses though it is well-formed YAML (``problem`` says why)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts: nesting depth and values while composing (composing recurses), then
    aliases, duplicate keys and over-long numbers on the composed node graph before constructing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._composed = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        self._composed += 1
        try:
            if self._depth > MAX_DEPTH:
                self._refuse(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            if self._composed > MAX_VALUES:
                self._refuse(f"more than {MAX_VALUES} values", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Node | None:
        node = super().get_single_node()
        if node is not None:
            self._check(node, 1, set(), {})
        return node

    def _check(
        self, node: Node, depth: int, on_path: set[int], seen: dict[int, tuple[int, int]]
    ) -> tuple[int, int]:
        """(values, levels) under ``node`` with aliases expanded; refuses as soon as a limit is passed.

        An alias is the same node object again: ``seen`` remembers each node's totals, so a bomb is
        measured without being expanded, and ``depth`` (the path from the root) never passes MAX_DEPTH.
        """
        key = id(node)
        if key in on_path:
            self._refuse("an alias refers to the value that holds it", node.start_mark)
        if key in seen:
            values, levels = seen[key]
            if depth + levels - 1 > MAX_DEPTH:
                self._refuse(f"nested more than {MAX_DEPTH} levels deep (through aliases)", node.start_mark)
            return values, levels
        if depth > MAX_DEPTH:
            self._refuse(f"nested more than {MAX_DEPTH} levels deep (through aliases)", node.start_mark)
        values, levels = 1, 1
        if isinstance(node, ScalarNode):
            if (
                node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
                and len(node.value) > MAX_NUMBER_CHARS
            ):
                self._refuse(f"a number of more than {MAX_NUMBER_CHARS} characters", node.start_mark)
        else:
            on_path.add(key)
            if isinstance(node, MappingNode):
                self._no_duplicate_keys(node)
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, SequenceNode):
                children = list(node.value)
            else:  # pragma: no cover - the composer makes only these three
                children = []
            for child in children:
                v, lv = self._check(child, depth + 1, on_path, seen)
                values += v
                levels = max(levels, lv + 1)
                if values > MAX_VALUES:
                    self._refuse(f"more than {MAX_VALUES} values once aliases are expanded", node.start_mark)
            on_path.discard(key)
        seen[key] = (values, levels)
        return values, levels

    def _no_duplicate_keys(self, node: MappingNode) -> None:
        first: dict[Any, Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # complex keys are left to the constructor; "<<" merges may repeat
            if len(key_node.value) > MAX_NUMBER_CHARS and key_node.tag != "tag:yaml.org,2002:str":
                continue  # refused as a value-length problem by _check
            key = self.construct_object(key_node)
            try:
                earlier = first.setdefault(key, key_node.start_mark)
            except TypeError:  # pragma: no cover - scalars are hashable
                continue
            if earlier is not key_node.start_mark:
                shown = clip(str(key) if isinstance(key, str) else key_node.value, 80)
                self._refuse(
                    f"duplicate key '{shown}' (first at line {earlier.line + 1})", key_node.start_mark
                )

    @staticmethod
    def _refuse(problem: str, mark: Any) -> None:
        raise YAMLRefused(problem=problem, problem_mark=mark)


def load_yaml(text: str, *, label: str, path: str | None = None) -> Any:
    """The data in YAML ``text``; ConfigError naming ``label`` and the line when it cannot be read."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # its reader refuses control characters here
        return loader.get_single_data()
    except YAMLRefused as exc:
        raise ConfigError(f"{label}{_where(exc.problem_mark)}: {exc.problem}", path=path) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        what = f"character {chr(exc.character)!r}" if isinstance(exc.character, int) else "character"
        raise ConfigError(f"{label} line {line}: invalid YAML: unacceptable {what}", path=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{label}{_where(mark)}: invalid YAML: {clip(problem)}", path=path) from None
    except (ValueError, OverflowError, TypeError) as exc:
        # PyYAML's constructors let some through, e.g. a timestamp like 2024-13-01 (no month 13).
        raise ConfigError(f"{label}: invalid YAML value: {clip(str(exc))}", path=path) from None
    except RecursionError:  # the limits above should make this unreachable; never a traceback
        raise ConfigError(f"{label}: the YAML is nested too deeply", path=path) from None
    finally:
        if loader is not None:
            loader.dispose()


def _where(mark: Any) -> str:
    return f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def clip(s: str, limit: int = 200) -> str:
    """``s`` on one line (non-printable characters escaped), at most about ``limit`` characters."""
    n = len(s)
    s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in s[: limit + 1])
    return s if n <= limit and len(s) <= limit else f"{s[:limit]}… ({n} characters)"
