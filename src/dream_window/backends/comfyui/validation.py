"""Checking an API-format graph against a server's ``object_info``, the way ComfyUI does.

One implementation serves three callers: the backend (at start, against the live server, so a
missing model file is named before the first frame), ``dream-window doctor``, and the test server
(which answers POST /prompt with exactly the error shapes recorded from ComfyUI v0.33.0).

Facts from the recording this follows (``shared/comfyui/recorded/06_validation_errors``):

* an unknown or missing ``class_type`` stops everything: ``missing_node_type`` with empty node_errors;
* a graph without an output node is ``prompt_no_outputs``;
* otherwise every output node is validated recursively; failures are collected per node
  (``required_input_missing``, ``value_not_in_list``, ``value_smaller_than_min``,
  ``value_bigger_than_max``, ``invalid_input_type``, ``return_type_mismatch``,
  ``exception_during_inner_validation``) with the outputs that depend on them;
* numbers are converted before checking (``"4"`` is a fine INT), ``step`` is not enforced;
* combo lists longer than 20 are abbreviated as ``(list of length N)`` with ``input_config: null``;
* combos come in two encodings: legacy ``[[opt, ...], {...}]`` and V3 ``["COMBO", {"options": [...]}]``;
* file inputs of nodes with their own validation (LoadImage, LoadLatent) accept subfolder paths and
  ``"name [output]"`` annotations that the listed options do not show.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Graph = Mapping[str, Any]

# Inputs checked by the node's own VALIDATE_INPUTS instead of the combo list: the list shows only
# top-level files of input/, yet annotated and subfolder names are valid.
FILE_INPUTS: dict[tuple[str, str], str] = {
    ("LoadImage", "image"): "image",
    ("LoadImageMask", "image"): "image",
    ("LoadLatent", "latent"): "latent",
}

_MAX_LISTED = 20


def combo_options(spec: Any) -> list[Any] | None:
    """The allowed values of a combo input in either encoding, or None when it is not a combo."""
    if not isinstance(spec, list | tuple) or not spec:
        return None
    head = spec[0]
    if isinstance(head, list | tuple):
        return list(head)
    if head == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return list(spec[1].get("options", []))
    return None


def input_type(spec: Any) -> str | None:
    """The type name of a typed input (INT, MODEL, ...); None for combos."""
    if isinstance(spec, list | tuple) and spec and isinstance(spec[0], str) and spec[0] != "COMBO":
        return spec[0]
    return None


def input_options(spec: Any) -> dict[str, Any]:
    if isinstance(spec, list | tuple) and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1]
    return {}


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def output_nodes(graph: Graph, object_info: Mapping[str, Any]) -> list[str]:
    return [
        nid for nid, node in graph.items() if object_info.get(node.get("class_type"), {}).get("output_node")
    ]


def _node_error(error_type: str, message: str, details: str, **extra: Any) -> dict[str, Any]:
    return {"type": error_type, "message": message, "details": details, "extra_info": extra}


def _top_error(error_type: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": error_type, "message": message, "details": details, "extra_info": extra}


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Either ``ok`` with the outputs to execute, or the server's error body."""

    ok: bool
    outputs: list[str]
    error: dict[str, Any] | None
    node_errors: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "node_errors": self.node_errors}


class _LinkFault(Exception):
    """A link that points nowhere; reported by the caller's frame, as ComfyUI does."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


def validate_graph(
    graph: Any,
    object_info: Mapping[str, Any],
    *,
    file_exists: Callable[[str, str], bool] | None = None,
) -> ValidationResult:
    """Validate ``graph`` like POST /prompt does. ``file_exists(kind, name)`` checks LoadImage-style
    inputs (``kind`` is "image" or "latent"); without it those inputs are accepted as given."""
    if not isinstance(graph, Mapping):
        return ValidationResult(
            False, [], _top_error("invalid_prompt", "Prompt is not a mapping of nodes"), {}
        )
    for nid, node in graph.items():
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        if class_type is None:
            return ValidationResult(
                False,
                [],
                _top_error(
                    "missing_node_type",
                    f"Node 'ID #{nid}' has no class_type. The workflow may be corrupted or a custom node is missing.",
                    f"Node ID '#{nid}'",
                    node_id=nid,
                    class_type=None,
                    node_title=None,
                ),
                {},
            )
        if class_type not in object_info:
            return ValidationResult(
                False,
                [],
                _top_error(
                    "missing_node_type",
                    f"Node '{class_type}' not found. The custom node may not be installed.",
                    f"Node ID '#{nid}'",
                    node_id=nid,
                    class_type=class_type,
                    node_title=class_type,
                ),
                {},
            )
    outputs = output_nodes(graph, object_info)
    if not outputs:
        return ValidationResult(False, [], _top_error("prompt_no_outputs", "Prompt has no outputs"), {})

    validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}
    checker = _Checker(graph, object_info, file_exists, validated)
    good: list[str] = []
    errors_by_output: dict[str, list[str]] = {}
    for out in outputs:
        try:
            ok = checker.check(out)
        except _LinkFault as fault:
            validated[out] = (
                False,
                [
                    _node_error(
                        "exception_during_validation",
                        "Exception when validating node",
                        str(fault.exc),
                        exception_type=type(fault.exc).__name__,
                    )
                ],
            )
            ok = False
        if ok:
            good.append(out)
        else:
            errors_by_output[out] = [nid for nid, (v, errs) in validated.items() if not v and errs]
    node_errors: dict[str, Any] = {}
    for out, failing in errors_by_output.items():
        for nid in failing:
            entry = node_errors.setdefault(
                nid,
                {
                    "errors": validated[nid][1],
                    "dependent_outputs": [],
                    "class_type": graph[nid]["class_type"],
                },
            )
            if out not in entry["dependent_outputs"]:
                entry["dependent_outputs"].append(out)
    if not good:
        return ValidationResult(
            False,
            [],
            _top_error("prompt_outputs_failed_validation", "Prompt outputs failed validation"),
            node_errors,
        )
    return ValidationResult(True, good, None, node_errors)


class _Checker:
    def __init__(
        self,
        graph: Graph,
        object_info: Mapping[str, Any],
        file_exists: Callable[[str, str], bool] | None,
        validated: dict[str, tuple[bool, list[dict[str, Any]]]],
    ) -> None:
        self.graph = graph
        self.info = object_info
        self.file_exists = file_exists
        self.validated = validated

    def check(self, nid: str) -> bool:
        if nid in self.validated:
            return self.validated[nid][0]
        node = self.graph[nid]  # KeyError here is a link to a missing node: the caller reports it
        class_type = node["class_type"]
        spec = self.info[class_type]
        inputs: Mapping[str, Any] = node.get("inputs") or {}
        required: Mapping[str, Any] = spec.get("input", {}).get("required", {})
        optional: Mapping[str, Any] = spec.get("input", {}).get("optional", {})
        errors: list[dict[str, Any]] = []
        valid = True
        self.validated[nid] = (True, [])  # cycles end here instead of recursing forever
        for name in required:
            if name not in inputs:
                errors.append(
                    _node_error("required_input_missing", "Required input is missing", name, input_name=name)
                )
        for name, value in inputs.items():
            in_spec = required.get(name, optional.get(name))
            if in_spec is None:
                continue
            if is_link(value):
                linked_id, idx = value
                try:
                    # Outside the caller's guard on purpose: a broken link is reported by the frame
                    # that asked for this node, keyed under this node (as ComfyUI does).
                    received = tuple(self.info[self.graph[linked_id]["class_type"]]["output"])[
                        idx
                    ]  # a tuple in ComfyUI
                except (KeyError, IndexError, TypeError) as exc:
                    raise _LinkFault(exc) from exc
                want = input_type(in_spec)
                if (
                    want is not None
                    and received != want
                    and "*" not in (received, want)
                    and not (set(want.split(",")) & set(str(received).split(",")))
                ):
                    errors.append(
                        _node_error(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{name}, received_type({received}) mismatch input_type({want})",
                            input_name=name,
                            input_config=list(in_spec),
                            received_type=received,
                            linked_node=list(value),
                        )
                    )
                    continue
                try:
                    if not self.check(linked_id):
                        valid = False
                except _LinkFault as fault:
                    cause = fault.exc
                    detail = f"'{cause.args[0]}'" if isinstance(cause, KeyError) else str(cause)
                    self.validated[linked_id] = (
                        False,
                        [
                            _node_error(
                                "exception_during_inner_validation",
                                "Exception when validating inner node",
                                detail,
                                input_name=name,
                                input_config=list(in_spec),
                                exception_message=detail,
                                exception_type=type(cause).__name__,
                                traceback=[],
                                linked_node=list(value),
                            )
                        ],
                    )
                    valid = False
                continue
            errors.extend(self._check_value(class_type, name, in_spec, value))
        if errors:
            valid = False
            self.validated[nid] = (False, errors)
        else:
            self.validated[nid] = (valid, [])
        return valid

    def _check_value(self, class_type: str, name: str, spec: Any, value: Any) -> list[dict[str, Any]]:
        typ = input_type(spec)
        opts = input_options(spec)
        config = list(spec) if isinstance(spec, list | tuple) else spec
        if typ in ("INT", "FLOAT", "STRING", "BOOLEAN"):
            try:
                if typ == "INT":
                    value = int(value)
                elif typ == "FLOAT":
                    value = float(value)
                elif typ == "STRING":
                    value = str(value)
                else:
                    value = bool(value)
            except (TypeError, ValueError) as exc:
                return [
                    _node_error(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {typ} value",
                        f"{name}, {value}, {exc}",
                        input_name=name,
                        input_config=config,
                        received_value=value,
                        exception_message=str(exc),
                    )
                ]
            if typ in ("INT", "FLOAT"):
                lo, hi = opts.get("min"), opts.get("max")
                if lo is not None and value < lo:
                    return [
                        _node_error(
                            "value_smaller_than_min",
                            f"Value {value} smaller than min of {lo}",
                            name,
                            input_name=name,
                            input_config=config,
                            received_value=value,
                        )
                    ]
                if hi is not None and value > hi:
                    return [
                        _node_error(
                            "value_bigger_than_max",
                            f"Value {value} bigger than max of {hi}",
                            name,
                            input_name=name,
                            input_config=config,
                            received_value=value,
                        )
                    ]
            return []
        options = combo_options(spec)
        if options is None:
            return []
        kind = FILE_INPUTS.get((class_type, name))
        if kind is not None:
            if self.file_exists is not None and not self.file_exists(kind, str(value)):
                return [
                    _node_error(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        f"{name} - Invalid {kind} file: {value}",
                        input_name=name,
                        input_config=config,
                        received_value=value,
                    )
                ]
            return []
        if isinstance(value, list):  # multiselect combos
            bad = [v for v in value if v not in options]
            value = bad[0] if bad else None
            if not bad:
                return []
        if value not in options:
            if len(options) > _MAX_LISTED:
                listed, cfg = f"(list of length {len(options)})", None
            else:
                listed, cfg = str(options), config
            return [
                _node_error(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: '{value}' not in {listed}",
                    input_name=name,
                    input_config=cfg,
                    received_value=value,
                )
            ]
        return []


# --- readable rendering --------------------------------------------------------------------------

# What a loader's file input is called in words, for "checkpoint 'x' is not on the server".
_FILE_WORDS = {
    "ckpt_name": "checkpoint",
    "unet_name": "diffusion model",
    "vae_name": "VAE",
    "clip_name": "text encoder",
    "clip_name1": "text encoder",
    "clip_name2": "text encoder",
    "lora_name": "LoRA",
    "image": "input image",
    "latent": "latent file",
}


# Where ComfyUI looks for each kind of file (under its models/ folder), so a message can say where
# to put it.
_FILE_FOLDERS = {
    "ckpt_name": "models/checkpoints",
    "unet_name": "models/diffusion_models (or models/unet)",
    "vae_name": "models/vae",
    "clip_name": "models/text_encoders (or models/clip)",
    "clip_name1": "models/text_encoders (or models/clip)",
    "clip_name2": "models/text_encoders (or models/clip)",
    "lora_name": "models/loras",
    "image": "input",
}


def missing_file_message(input_name: str, value: Any, options: list[Any] | None) -> str:
    word = _FILE_WORDS.get(input_name, input_name)
    has = ", ".join(map(str, options)) if options else "nothing"
    folder = _FILE_FOLDERS.get(input_name)
    where = f" (put it in ComfyUI's {folder} folder)" if folder else ""
    return f"{word} {value!r} is not on the ComfyUI server{where}; it has: {has}"


def render_error(
    error: Mapping[str, Any] | None,
    node_errors: Mapping[str, Any],
    object_info: Mapping[str, Any] | None = None,
    graph: Graph | None = None,
) -> str:
    """The server's rejection as lines a person can act on: which node, which input, what was wrong,
    what was allowed."""
    lines: list[str] = []
    if error and error.get("type") != "prompt_outputs_failed_validation":
        extra = error.get("extra_info") or {}
        where = f" (node {extra['node_id']})" if extra.get("node_id") else ""
        lines.append(f"{error.get('message', 'rejected')}{where}")
    for nid, entry in node_errors.items():
        class_type = entry.get("class_type", "?")
        for err in entry.get("errors", []):
            extra = err.get("extra_info") or {}
            name = extra.get("input_name")
            head = f"node {nid} ({class_type})" + (f" input '{name}'" if name else "")
            typ = err.get("type")
            if typ == "value_not_in_list":
                options = combo_options(extra.get("input_config"))
                if options is None and object_info is not None and name:
                    spec = object_info.get(class_type, {}).get("input", {})
                    options = combo_options(
                        {**spec.get("required", {}), **spec.get("optional", {})}.get(name)
                    )
                received = extra.get("received_value")
                if name in _FILE_WORDS:
                    lines.append(f"{head}: {missing_file_message(name, received, options)}")
                else:
                    allowed = (
                        ", ".join(map(str, options[:30])) + (" ..." if options and len(options) > 30 else "")
                        if options
                        else "(see the server)"
                    )
                    lines.append(f"{head}: {received!r} is not allowed; allowed: {allowed}")
            elif typ == "required_input_missing":
                lines.append(f"node {nid} ({class_type}): required input '{err.get('details')}' is missing")
            elif typ in ("value_smaller_than_min", "value_bigger_than_max"):
                lines.append(f"{head}: {err.get('message')}")
            elif typ == "return_type_mismatch":
                lines.append(
                    f"{head}: linked to {extra.get('linked_node')} which gives "
                    f"{extra.get('received_type')}, but it needs {input_type(extra.get('input_config'))}"
                )
            elif typ == "invalid_input_type":
                lines.append(
                    f"{head}: {extra.get('received_value')!r} is not a valid value "
                    f"({extra.get('exception_message', err.get('message'))})"
                )
            elif typ == "exception_during_inner_validation":
                lines.append(
                    f"{head}: a link is broken ({err.get('details')}; linked node {extra.get('linked_node')})"
                )
            else:
                lines.append(f"{head}: {err.get('message')}: {err.get('details')}")
    return "; ".join(lines) if lines else "the server rejected the workflow"


_LOADERS: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("ckpt_name",),
    "UNETLoader": ("unet_name",),
    "VAELoader": ("vae_name",),
    "DualCLIPLoader": ("clip_name1", "clip_name2"),
    "CLIPLoader": ("clip_name",),
    "LoraLoader": ("lora_name",),
}


def model_files(graph: Graph) -> list[str]:
    """The model files a graph's loaders name, in graph order."""
    names: list[str] = []
    for node in graph.values():
        for name in _LOADERS.get(node.get("class_type", ""), ()):
            value = (node.get("inputs") or {}).get(name)
            if isinstance(value, str) and value not in names:
                names.append(value)
    return names


def check_model_files(graph: Graph, object_info: Mapping[str, Any]) -> list[str]:
    """Loader inputs naming files the server does not have, as "checkpoint 'x' is not on ..." lines."""
    problems: list[str] = []
    for node in graph.values():
        names = _LOADERS.get(node.get("class_type", ""))
        if not names:
            continue
        spec = object_info.get(node["class_type"], {}).get("input", {}).get("required", {})
        for name in names:
            value = (node.get("inputs") or {}).get(name)
            options = combo_options(spec.get(name))
            if options is not None and isinstance(value, str) and value not in options:
                msg = missing_file_message(name, value, options)
                if msg not in problems:
                    problems.append(msg)
    return problems


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
