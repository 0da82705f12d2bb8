"""POST /prompt validation, done the way ComfyUI v0.33.0 does it, against the recorded object_info.

This is the fake's own implementation, written from the recordings and not shared with the client
(``dream_window.backends.comfyui.validation``): a misunderstanding in one shows up as a test
failure instead of being agreed with. The error bodies follow
``recorded/06_validation_errors/summary.json`` (21 cases) and the acceptance of the four
Flux / SDXL-Turbo graphs in ``recorded/09_flux_sdxl_validation``:

* Every node is looked at first, in graph order: no ``class_type`` or an unknown one stops
  everything with ``missing_node_type`` and empty ``node_errors``.
* The outputs are the nodes whose class is an ``output_node``; none is ``prompt_no_outputs``.
* Each output is checked depth first, every node once (results are shared between outputs). Any
  list value is a link. A fault met while following a link out of node B (a missing node, an
  output index past the end) is caught by the node A that asked for B: it is filed under B, naming
  A's input (``exception_during_inner_validation``, details ``"'99'"`` or ``"tuple index out of
  range"``: output types are a tuple).
* Widget values are converted before the range check (``"4"`` is a fine INT and is stored back
  converted, as the recorded history shows); ``step`` is not enforced.
* Combos come as ``[[options], {...}]`` or ``["COMBO", {"options": [...]}]``; a miss lists the
  options, or says ``(list of length N)`` with ``input_config: null`` past 20 of them.
* LoadImage, LoadImageMask and LoadLatent check their file themselves (VALIDATE_INPUTS), so
  subfolder paths and ``"name [temp]"`` annotations pass although the listed options lack them.
* A failed output adds itself to ``dependent_outputs`` of every failed node found so far.

Not in the recordings, taken from ComfyUI's behaviour: ``custom_validation_failed`` for a missing
file, ``bad_linked_input`` for a list that is not ``[node, index]`` and ``dependency_cycle``.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# (class_type, input) → what the node's own VALIDATE_INPUTS checks instead of the combo list.
FILE_CHECKED: dict[tuple[str, str], str] = {
    ("LoadImage", "image"): "image",
    ("LoadImageMask", "image"): "image",
    ("LoadLatent", "latent"): "latent",
}
_LISTED_AT_MOST = 20
_CONVERTERS: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}

FileCheck = Callable[[str], bool]
Reason = dict[str, Any]


def is_link(value: Any) -> bool:
    """ComfyUI reads any list in ``inputs`` as a link; validation has made sure it is ``[id, index]``."""
    return isinstance(value, list)


def is_canonical_uuid(value: Any) -> bool:
    """A client-chosen prompt_id must be a UUID already written the way ``str(uuid)`` writes it."""
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def combo_choices(spec: list[Any]) -> list[Any] | None:
    """The options of a combo input in either recorded encoding; None for any other input."""
    kind = spec[0]
    if isinstance(kind, list):
        return kind
    if kind == "COMBO":
        return list(_settings(spec).get("options", []))
    return None


def _settings(spec: list[Any]) -> dict[str, Any]:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _reason(kind: str, message: str, details: str, **extra_info: Any) -> Reason:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What POST /prompt answers: accepted with the outputs to run (some outputs may still have
    failed, listed in ``node_errors``), or refused with ``error``."""

    error: dict[str, Any] | None
    outputs: list[str] = field(default_factory=list)
    node_errors: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.error is None

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "node_errors": self.node_errors}


def validate_prompt(
    prompt: dict[str, Any], object_info: Mapping[str, Any], file_exists: FileCheck
) -> Verdict:
    """Validate an API-format graph (converted widget values are written back into it)."""
    for nid, node in prompt.items():
        refusal = _missing_node_type(nid, node, object_info)
        if refusal is not None:
            return Verdict(refusal)
    outputs = [nid for nid, node in prompt.items() if object_info[node["class_type"]].get("output_node")]
    if not outputs:
        return Verdict(_reason("prompt_no_outputs", "Prompt has no outputs", ""))
    walk = _Walk(prompt, object_info, file_exists)
    good: list[str] = []
    node_errors: dict[str, Any] = {}
    for out in outputs:
        try:
            ok = walk.node(out)
        except Exception as exc:
            walk.results[out] = (
                False,
                [
                    _reason(
                        "exception_during_validation",
                        "Exception when validating node",
                        str(exc),
                        exception_type=_type_name(exc),
                        traceback=traceback.format_tb(exc.__traceback__),
                    )
                ],
            )
            ok = False
        if ok:
            good.append(out)
            continue
        for nid, (valid, reasons) in walk.results.items():
            if not valid and reasons:
                entry = node_errors.setdefault(
                    nid, {"errors": reasons, "dependent_outputs": [], "class_type": prompt[nid]["class_type"]}
                )
                entry["dependent_outputs"].append(out)
    if not good:
        failed = _reason("prompt_outputs_failed_validation", "Prompt outputs failed validation", "")
        return Verdict(failed, [], node_errors)
    return Verdict(None, good, node_errors)


def _missing_node_type(nid: str, node: Any, object_info: Mapping[str, Any]) -> Reason | None:
    class_type = node.get("class_type") if isinstance(node, dict) else None
    title = (node.get("_meta") or {}).get("title") if isinstance(node, dict) else None
    if class_type is None:
        return _reason(
            "missing_node_type",
            f"Node '{title or f'ID #{nid}'}' has no class_type. The workflow may be corrupted or a "
            "custom node is missing.",
            f"Node ID '#{nid}'",
            node_id=nid,
            class_type=None,
            node_title=title,
        )
    if class_type not in object_info:
        return _reason(
            "missing_node_type",
            f"Node '{title or class_type}' not found. The custom node may not be installed.",
            f"Node ID '#{nid}'",
            node_id=nid,
            class_type=class_type,
            node_title=title or class_type,
        )
    return None


class _Walk:
    """One validation: each node's (valid, reasons), shared by every output that reaches it."""

    def __init__(
        self, prompt: dict[str, Any], object_info: Mapping[str, Any], file_exists: FileCheck
    ) -> None:
        self.prompt = prompt
        self.info = object_info
        self.file_exists = file_exists
        self.results: dict[str, tuple[bool, list[Reason]]] = {}
        self._visiting: list[str] = []

    def node(self, nid: str) -> bool:
        """Whether ``nid`` and everything upstream of it is valid. Faults met while following one
        of its links propagate to the caller, which files them under ``nid``."""
        if nid in self.results:
            return self.results[nid][0]
        if nid in self._visiting:
            self._cycle(nid)
            return False
        self._visiting.append(nid)
        try:
            reasons, upstream_ok = self._inputs(nid)
        finally:
            self._visiting.pop()
        # A cycle found below has already filed its members; keep that reason.
        self.results.setdefault(nid, (not reasons and upstream_ok, reasons))
        return self.results[nid][0]

    def _inputs(self, nid: str) -> tuple[list[Reason], bool]:
        node = self.prompt[nid]
        inputs = node["inputs"]
        schema = self.info[node["class_type"]].get("input", {})
        required: dict[str, Any] = schema.get("required") or {}
        declared = {**required, **(schema.get("optional") or {})}
        reasons: list[Reason] = []
        upstream_ok = True
        for name, spec in declared.items():
            if name not in inputs:
                if name in required:
                    reasons.append(
                        _reason("required_input_missing", "Required input is missing", name, input_name=name)
                    )
                continue
            value = inputs[name]
            if isinstance(value, list):
                problem, linked_ok = self._link(name, spec, value)
                upstream_ok = upstream_ok and linked_ok
            else:
                problem = self._widget(node["class_type"], inputs, name, spec)
            if problem is not None:
                reasons.append(problem)
        return reasons, upstream_ok

    def _link(self, name: str, spec: list[Any], link: list[Any]) -> tuple[Reason | None, bool]:
        if len(link) != 2:
            return _reason(
                "bad_linked_input",
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                name,
                input_name=name,
                input_config=spec,
                received_value=link,
            ), True
        source, index = link
        # Deliberately unguarded: a missing node or index belongs to whoever asked for this node.
        received = tuple(self.info[self.prompt[source]["class_type"]]["output"])[index]
        wanted = spec[0] if isinstance(spec[0], str) else "COMBO"
        if not _types_meet(received, wanted):
            return _reason(
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                f"{name}, received_type({received}) mismatch input_type({wanted})",
                input_name=name,
                input_config=spec,
                received_type=received,
                linked_node=link,
            ), True
        try:
            return None, self.node(source)
        except Exception as exc:
            self.results[source] = (
                False,
                [
                    _reason(
                        "exception_during_inner_validation",
                        "Exception when validating inner node",
                        str(exc),
                        input_name=name,
                        input_config=spec,
                        exception_message=str(exc),
                        exception_type=_type_name(exc),
                        traceback=traceback.format_tb(exc.__traceback__),
                        linked_node=link,
                    )
                ],
            )
            return None, False

    def _widget(self, class_type: str, inputs: dict[str, Any], name: str, spec: list[Any]) -> Reason | None:
        value = inputs[name]
        if isinstance(value, dict) and "__value__" in value:  # a list-valued widget, wrapped
            value = inputs[name] = value["__value__"]
        kind = spec[0]
        settings = _settings(spec)
        convert = _CONVERTERS.get(kind) if isinstance(kind, str) else None
        if convert is not None:
            try:
                value = inputs[name] = convert(value)
            except Exception as exc:
                return _reason(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {kind} value",
                    f"{name}, {value}, {exc}",
                    input_name=name,
                    input_config=spec,
                    received_value=value,
                    exception_message=str(exc),
                )
        file_kind = FILE_CHECKED.get((class_type, name))
        if file_kind is not None:
            if self.file_exists(str(value)):
                return None
            return _reason(
                "custom_validation_failed",
                "Custom validation failed for node",
                f"{class_type} - Invalid {file_kind} file: {value}",
                input_name=name,
                input_config=spec,
                received_value=value,
            )
        if "min" in settings and value < settings["min"]:
            return _reason(
                "value_smaller_than_min",
                f"Value {value} smaller than min of {settings['min']}",
                name,
                input_name=name,
                input_config=spec,
                received_value=value,
            )
        if "max" in settings and value > settings["max"]:
            return _reason(
                "value_bigger_than_max",
                f"Value {value} bigger than max of {settings['max']}",
                name,
                input_name=name,
                input_config=spec,
                received_value=value,
            )
        return self._combo(name, spec, value)

    @staticmethod
    def _combo(name: str, spec: list[Any], value: Any) -> Reason | None:
        choices = combo_choices(spec)
        if choices is None:
            return None
        if _settings(spec).get("multiselect") and isinstance(value, list):
            missing = any(v not in choices for v in value)
        else:
            missing = value not in choices
        if not missing:
            return None
        long_list = len(choices) > _LISTED_AT_MOST
        return _reason(
            "value_not_in_list",
            "Value not in list",
            f"{name}: '{value}' not in "
            + (f"(list of length {len(choices)})" if long_list else str(choices)),
            input_name=name,
            input_config=None if long_list else spec,
            received_value=value,
        )

    def _cycle(self, nid: str) -> None:
        path = [*self._visiting[self._visiting.index(nid) :], nid]
        members = list(dict.fromkeys(path))
        details = " -> ".join(f"{n} ({self.prompt[n]['class_type']})" for n in path)
        for n in members:
            self.results[n] = (
                False,
                [
                    _reason(
                        "dependency_cycle",
                        "Dependency cycle detected",
                        details,
                        node_id=n,
                        cycle_nodes=members,
                    )
                ],
            )


def _types_meet(received: Any, wanted: str) -> bool:
    """ComfyUI's rule: equal, a ``*`` wildcard, or comma-separated type lists that share one."""
    if received == wanted:
        return True
    if not isinstance(received, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in wanted.split(",")}
    return "*" in got or "*" in want or bool(got & want)
