"""Smaller tool schemas: the same JSON Schema meaning in fewer characters.

Every client pays for ``tools/list`` in context on every conversation. Pydantic's schemas repeat
what a model does not need: a ``title`` on every field (the field's name, re-cased),
``anyOf: [X, {"type": "null"}]`` for an optional field, ``"default": null``, ``"additionalProperties":
true`` (the default), a description on the output schema that repeats the tool's. The rewrite keeps
every constraint (types, lengths, patterns, enums, ranges, required, non-null defaults); validation
is untouched, since the SDK validates arguments and results with the pydantic models, not with
these schemas.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from core.errors import InputError
from core.rules import MAX_NAME_CHARS

#: an integer as a caller writes one in a string ("4", "-1"; not "--4" or "²")
_INTEGER = re.compile(r"-?[0-9]{1,9}")
#: pydantic's " or instance of SomeModel" in a message: the name of one of our classes
_INSTANCE_OF = re.compile(r" or instance of \w+")

#: keywords whose value is a schema / a list of schemas / a name -> schema map
_SCHEMA_KEYS = ("items", "additionalProperties", "not")
_SCHEMA_LIST_KEYS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAP_KEYS = ("properties", "$defs")


def compact_schema(schema: dict[str, Any], *, output: bool = False) -> dict[str, Any]:
    """``schema`` with the same meaning, written shorter (a new dict; the input is left alone).

    Args:
        schema: a JSON Schema object as pydantic writes it.
        output: an output schema: names and types only. Its descriptions (the tool's description
            says what comes back), defaults and ``required`` (a result carries every field) go too.
    """
    return _node(schema, output)


def _node(schema: dict[str, Any], output: bool) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _SCHEMA_KEYS and isinstance(value, dict):
            node[key] = _node(value, output)
        elif key in _SCHEMA_LIST_KEYS and isinstance(value, list):
            node[key] = [_node(v, output) if isinstance(v, dict) else v for v in value]
        elif key in _SCHEMA_MAP_KEYS and isinstance(value, dict):
            node[key] = {name: _node(v, output) if isinstance(v, dict) else v for name, v in value.items()}
        else:
            node[key] = value
    if "default" in node and (node["default"] is None or output):
        del node["default"]
    if output and isinstance(node.get("description"), str):
        del node["description"]
    if output and isinstance(node.get("required"), list):
        del node["required"]
    if node.get("additionalProperties") is True:
        del node["additionalProperties"]
    return _same_prefix_items(_nullable(node))


def _nullable(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [{"type": T, ...}, {"type": "null"}]`` -> ``{"type": [T, "null"], ...}``."""
    options = node.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return node
    other = options[0] if options[1] == {"type": "null"} else options[1]
    if not isinstance(other.get("type"), str) or "const" in other or set(other) & set(node) - {"anyOf"}:
        return node  # a $ref, a nested union or a clashing keyword: leave the anyOf
    merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **other, "type": [other["type"], "null"]}
    if "enum" in other:
        merged["enum"] = [*other["enum"], None]  # an enum admits only its members: null joins them
    return merged


def _same_prefix_items(node: dict[str, Any]) -> dict[str, Any]:
    """A fixed-length tuple of one item type (an RGBA colour) -> ``items`` plus its length."""
    prefix = node.get("prefixItems")
    if not isinstance(prefix, list) or not prefix or "items" in node or any(p != prefix[0] for p in prefix):
        return node
    if node.get("minItems") != len(prefix) or node.get("maxItems") != len(prefix):
        return node
    rest = {k: v for k, v in node.items() if k != "prefixItems"}
    return {**rest, "items": prefix[0]}


def compact_tools(tools: list[Any]) -> None:
    """Rewrite each registered tool's input and output schema in place (``mcp...tools.Tool``)."""
    for tool in tools:
        tool.parameters = compact_schema(tool.parameters)
        metadata = tool.fn_metadata
        if metadata.output_schema is not None:
            # the SDK reads this live; results are still validated against the output model
            metadata.output_schema = compact_schema(metadata.output_schema, output=True)
            tool.__dict__.pop("output_schema", None)  # drop the cached copy, if one was read


def as_given(tool: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` as the caller meant them: ``null`` for an argument that has a default is the
    argument not given (``"depth": null`` was refused as no depth; ``"tier": null`` passed), and a
    number written as a string is the number where the argument is one of some numbers
    (``"scale": "4"`` was refused with "Input should be 2, 3 or 4"; ``"max_sources": "5"`` passed).

    Raises:
        InputError: ``true``/``false`` given for a number, naming the argument.
    """
    fields = {field.alias or name: field for name, field in tool.fn_metadata.arg_model.model_fields.items()}
    given: dict[str, Any] = {}
    for key, value in arguments.items():
        field = fields.get(key)
        if field is None:
            given[key] = value
            continue
        if value is None and not field.is_required() and field.default is not None:
            continue
        if isinstance(value, bool) and (number := _number_kind(field.annotation)):
            # pydantic's lax mode read true as 1 and false as 0 ("tile": false ran untiled, "max_sources":
            # true kept one source) where the job's own strict schema, and the RunPod door, refuse it
            refused = InputError(f"invalid arguments for {tool.name}: {key}: Input should be {number}, not true/false")
            refused.field = key
            raise refused
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()) and int(value) in _numbers_of(field.annotation):
            value = int(value)
        given[key] = value
    return given


def _number_kind(annotation: Any) -> str | None:
    """"a valid integer" or "a valid number" for an ``int`` or ``float`` argument (optional or not);
    None for any other type (a bool one, a Literal of numbers, a union of several types)."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)] \
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) else [annotation]
    if len(options) != 1:
        return None
    return {int: "a valid integer", float: "a valid number"}.get(options[0])


def _numbers_of(annotation: Any) -> list[int]:
    """The numbers a ``Literal`` of them (optional or not) allows; none for any other type."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)] \
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) else [annotation]
    if len(options) != 1 or typing.get_origin(options[0]) is not typing.Literal:
        return []
    return [v for v in typing.get_args(options[0]) if isinstance(v, int) and not isinstance(v, bool)]


def where(loc: Any) -> str:
    """A pydantic error's location as the house writes a field: ``images[0].path`` (a key may be long)."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{str(part)[:MAX_NAME_CHARS]}" for part in loc).lstrip(".")


def argument_errors(tool: str, error: Any, known: list[str]) -> str:
    """One line per bad argument of ``tool`` (a pydantic ``ValidationError``): where, and what is
    wrong, with the limit pydantic names; never the value given (it may be a secret)."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        at = where(item["loc"]) or "arguments"
        if item["type"] == "extra_forbidden":
            lines.append(f"{at}: unknown argument; {tool} takes {', '.join(known)}")
        else:  # "a valid dictionary or instance of ImageItem": the class is ours, not the caller's
            lines.append(f"{at}: {_INSTANCE_OF.sub('', item['msg'])}")
    return f"invalid arguments for {tool}: " + "; ".join(lines)
