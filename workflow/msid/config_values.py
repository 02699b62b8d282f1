"""Config values typed as the schema says.

``snakemake --config identify="{fdr: 0.01}"`` hands nested values over as strings (Snakemake
reads them with YAML's base loader), so the schema would reject ``'0.01' is not of type
'number'`` for a value the user wrote as a number. :func:`type_as_schema` reads such a string
again (YAML's safe loader) where the schema asks for a number, an integer, a boolean, a list or
a mapping and the string reads as one; a string where the schema takes strings stays a string
(a sample named ``001`` is not the number 1). Light on purpose: the Snakefile runs it on
every parse.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_CHECKS = {
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _resolve(node: dict, root: dict) -> dict:
    ref = node.get("$ref", "") if isinstance(node, dict) else ""
    if ref.startswith("#/"):
        for part in ref[2:].split("/"):
            root = root[part]
        return {**root, **{k: v for k, v in node.items() if k != "$ref"}}
    return node if isinstance(node, dict) else {}


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _number(text: str) -> int | float | None:
    """``text`` as a decimal number (``8``, ``1e-3``, ``0.5``), else None (``nan``, ``no``)."""
    t = text.strip()
    if not _NUMBER.fullmatch(t):
        return None
    return int(t, 10) if t.lstrip("+-").isdigit() else float(t)


def _read(text: str, types: list[str]) -> Any:
    """``text`` as the schema's types would have it: numbers as Python reads them (``1e-3``,
    ``010`` = 10, as Snakemake reads a top-level value; YAML 1.1 would keep ``1e-3`` a string
    and read ``010`` as octal), the rest (booleans, lists, mappings) as YAML reads it."""
    if {"integer", "number"} & set(types) and (n := _number(text)) is not None:
        return n
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _typed(value: Any, node: dict, root: dict, where: str, changed: list[str]) -> Any:
    node = _resolve(node, root)
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(value, str) and types and "string" not in types:
        parsed = _read(value, types)
        if any(_CHECKS[t](parsed) for t in types if t in _CHECKS):
            value = parsed
            changed.append(where)
    if isinstance(value, dict) and types == ["object"] and not (
            "properties" in node or "additionalProperties" in node):
        _typed_free(value, where, changed)  # a method's or a model's own options
    elif isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key in list(value):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = _typed(value[key], sub, root, f"{where}.{key}".lstrip("."),
                                    changed)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value[:] = [_typed(v, node["items"], root, f"{where}[{i}]", changed)
                    for i, v in enumerate(value)]
    return value


def _typed_free(options: dict, where: str, changed: list[str]) -> None:
    """Options the schema leaves to their reader (``identify.method_options.denovo``,
    ``models.train.ranker``): a string that reads as a boolean or a number becomes one
    (``fallback: 'false'``, ``lr: '1e-3'``); any other string stays as it is."""
    for key, v in options.items():
        at = f"{where}.{key}".lstrip(".")
        if isinstance(v, dict):
            _typed_free(v, at, changed)
        elif isinstance(v, str):  # true/false only: an option's 'no' or 'on' stays a word
            flag = {"true": True, "false": False}.get(v.strip().lower())
            parsed = flag if flag is not None else _number(v)
            if parsed is not None:
                options[key] = parsed
                changed.append(at)


def type_as_schema(config: dict, schema: dict) -> list[str]:
    """Retype, in place, the string values of ``config`` that the schema wants as numbers,
    booleans, lists or mappings and that read as such; returns the keys retyped."""
    changed: list[str] = []
    _typed(config, schema, schema, "", changed)
    return changed


def settled(value):
    """A config value with its mappings' keys in sorted order, at every level: Snakemake
    compares a rule's params as written out, so the same settings restated in another order
    (an overlay file, ``--config``) would otherwise rerun the rule and every one after it."""
    if isinstance(value, dict):
        return {k: settled(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [settled(v) for v in value]
    return value
