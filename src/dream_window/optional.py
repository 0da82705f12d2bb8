"""Optional parts of Dream Window, imported only when present.

``find_spec`` first, then a plain import: a part that is absent is skipped, while a part that is
present but broken fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


def optional_module(name: str) -> ModuleType | None:
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:  # a parent package is missing
        return None
    return importlib.import_module(name)
