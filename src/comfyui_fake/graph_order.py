"""Which nodes a prompt runs, in which order, and which of them its cache already holds.

The order matters to tests: it decides the recorded ``executing`` sequence and which node an
``execution_error`` names (the first loader to run, in ``09_flux_sdxl_validation``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from comfyui_fake.validation import is_link

Graph = Mapping[str, Any]


def _links(graph: Graph, nid: str) -> list[str]:
    return [v[0] for v in (graph[nid].get("inputs") or {}).values() if is_link(v)]


def needed(graph: Graph, outputs: list[str]) -> list[str]:
    """Every node the outputs depend on, upstream first."""
    seen: dict[str, None] = {}

    def visit(nid: str) -> None:
        if nid in seen:
            return
        for source in _links(graph, nid):
            visit(source)
        seen[nid] = None

    for out in outputs:
        visit(out)
    return list(seen)


def execution_order(
    graph: Graph, outputs: list[str], cached: set[str], object_info: Mapping[str, Any]
) -> list[str]:
    """ComfyUI's order: the pending nodes (cached ones left out) are collected by a stack walk from
    each output, then the first ready node is taken again and again, preferring output nodes, then
    nodes that feed an output, then nodes two steps before one (its "UX-friendly" pick)."""
    pending: dict[str, None] = {}
    deps: dict[str, set[str]] = {}
    blocking: dict[str, set[str]] = {}
    for out in outputs:
        stack = [out]
        while stack:
            nid = stack.pop()
            if nid in pending:
                continue
            pending[nid] = None
            deps.setdefault(nid, set())
            blocking.setdefault(nid, set())
            for source in _links(graph, nid):
                if source not in cached:
                    stack.append(source)
                    deps[nid].add(source)
                    blocking.setdefault(source, set()).add(nid)

    def is_output(nid: str) -> bool:
        return bool(object_info.get(graph[nid]["class_type"], {}).get("output_node"))

    order: list[str] = []
    while pending:
        ready = [n for n in pending if not (deps[n] & pending.keys())]
        pick = (
            next((n for n in ready if is_output(n)), None)
            or next((n for n in ready if any(is_output(b) for b in blocking[n])), None)
            or next((n for n in ready if any(is_output(c) for b in blocking[n] for c in blocking[b])), None)
            or ready[0]
        )
        order.append(pick)
        del pending[pick]
    return order


def signatures(
    graph: Graph, nodes: list[str], file_digest: Callable[[str, str, Any], str | None]
) -> dict[str, str]:
    """A cache key per node: its class, its widget values and its inputs' keys, recursively. For
    file inputs ``file_digest(class_type, input, value)`` adds the file's content (IS_CHANGED), so a
    rewritten input image runs again."""
    memo: dict[str, str] = {}

    def sign(nid: str) -> str:
        if nid in memo:
            return memo[nid]
        node = graph[nid]
        parts: list[Any] = [node["class_type"]]
        for name, value in sorted((node.get("inputs") or {}).items()):
            if is_link(value):
                parts.append((name, sign(value[0]), value[1]))
                continue
            parts.append((name, value))
            with contextlib.suppress(Exception):  # a missing file simply fails later, in the node
                digest = file_digest(node["class_type"], name, value)
                if digest is not None:
                    parts.append(digest)
        memo[nid] = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
        return memo[nid]

    return {nid: sign(nid) for nid in nodes}


def with_defaults(object_info: Mapping[str, Any], class_type: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Inputs left out take their schema default, as the node function's own default would."""
    spec = object_info.get(class_type, {}).get("input", {})
    for section in ("required", "optional"):
        for name, s in (spec.get(section) or {}).items():
            if name not in inputs and len(s) > 1 and isinstance(s[1], dict) and "default" in s[1]:
                inputs[name] = s[1]["default"]
    return inputs
