"""How a config that failed validation reads to the operator: one line per problem, each naming
the file and the key, with what to do (the valid keys of a section, the README for a missing one).

pydantic runs ``SwarmConfig``'s cross-section checks only once every field is valid; the lines
here add those checks on the raw file (``core.config_refs.lenient_cross_reference_problems``), so
one run names every bad key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from core.config_refs import lenient_cross_reference_problems
from core.config_schema import SearchBackends, StorageBackends
from core.redact import redact
from core.redact_config import is_secret_entry

__all__ = ["format_validation_error"]

#: the keys whose settings ``SearchSection``/``StorageSection`` keep as plain dicts, checked
#: against these models (so an unknown key there lists these models' fields)
_SETTINGS_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    ("providers", "search", "backends"): SearchBackends,
    ("providers", "storage", "backends"): StorageBackends,
}


def format_validation_error(
    exc: ValidationError, file: str, root: type[BaseModel], data: Any = None,
    notes: Mapping[str, str] | None = None,
) -> str:
    """One line per problem, each with the file; ``root``: the model validated (the valid keys of a
    section are read from it); ``data`` (the interpolated file): also the cross-references pydantic
    never reached (its after-validator runs only once every field is valid), so one run names
    every bad key; ``notes``: key path -> text appended to that key's lines."""
    lines = []
    errors = exc.errors()
    guesses = _misspelled(root, errors)
    for err in errors:
        loc = _key_path(err["loc"], data)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(root, err["loc"])
            guess = guesses.get(err["loc"])
            msg = "unknown key; remove it or check its spelling" + (f" (did you mean {guess}?)" if guess else "") + (
                f"; valid: {', '.join(valid)}" if valid else " (see README, Config reference)")
        elif err["type"] == "missing":
            typo = next((str(bad[-1]) for bad, good in guesses.items() if (*bad[:-1], good) == err["loc"]), None)
            msg = f"required key is missing; add it, or fix the misspelled {typo!r}" if typo else (
                "required key is missing; add it (see README, Config reference)")
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        else:
            msg = ("the key itself is not valid: " if "[key]" in err["loc"] else "") + _with_input(msg, err, loc, notes or {})
        for part in msg.split("\n"):  # the cross-reference check joins its problems with line breaks
            lines.append(f"{file}: {loc + ': ' if loc else ''}{part}")
    if data is not None and not any(not err["loc"] for err in exc.errors()):
        lines += [f"{file}: {problem}" for problem in lenient_cross_reference_problems(data)]
    for i, line in enumerate(lines):  # the cross-reference lines name their key first, too
        key = line.removeprefix(f"{file}: ").split(": ", 1)[0]
        lines[i] += (notes or {}).get(key, "")
    return "invalid config:\n  " + "\n  ".join(lines)


def _valid_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the section holding ``loc``'s last key accepts (empty where it cannot be told)."""
    node: Any = root
    for i, part in enumerate(loc[:-1]):
        settings = _SETTINGS_MODELS.get(tuple(map(str, loc[: i + 1])))
        if settings is not None:
            node = settings
            continue
        node = _field_model(node, part)
        if node is None:
            return []
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _field_model(node: Any, part: Any) -> Any:
    """The model (or ``dict[str, model]`` / ``list[model]`` annotation) found one key below ``node``."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(str(part))
        return None if field is None else _unwrap(field.annotation)
    args = [a for a in getattr(node, "__args__", ()) if a is not type(None)]
    return _unwrap(args[-1]) if args else None  # dict[str, X] or list[X]: one key or index down


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if len(args) == 1 and type(annotation).__name__ in ("UnionType", "_UnionGenericAlias"):
        return args[0]
    return annotation


def _key_path(loc: tuple[Any, ...], data: Any) -> str:
    """``a.b[0]`` for ``loc``: an int is a list's index only where the file has a list there (the
    key ``3:`` of a mapping read as ``[3]``); pydantic's ``[key]`` (the key itself was bad) is
    left out, the message says so."""
    path, node = "", data
    for part in loc:
        if part == "[key]":
            break
        index = isinstance(part, int) and (node is None or isinstance(node, list))  # None: not known, as before
        path += f"[{part}]" if index else f".{part}" if path else str(part)
        node = node[part] if index and part < len(node) else node.get(part) if isinstance(node, dict) else None
    return path


#: pydantic's wording for a section given something else (it named the class: "instance of CircuitSpec")
_NOT_A_MAPPING = ("model_type", "dict_type")
#: errors about a value of the wrong type or out of range: the message says what was given
_ABOUT_THE_VALUE = frozenset({
    *_NOT_A_MAPPING, "list_type", "string_type", "int_type", "float_type", "bool_type", "int_parsing",
    "float_parsing", "bool_parsing", "literal_error", "enum", "finite_number", "greater_than",
    "greater_than_equal", "less_than", "less_than_equal",
})


def _with_input(msg: str, err: ErrorDetails, loc: str, notes: Mapping[str, str]) -> str:
    """``msg`` with what the file gave: its kind for a mapping, list or null, the value itself for a
    number, or for text written in the file under a key not named like a secret (redacted, and cut
    short); a value a variable gave is not quoted (its note names the variable)."""
    if err["type"] not in _ABOUT_THE_VALUE:
        return msg
    if err["type"] in _NOT_A_MAPPING:
        msg = "Input should be a mapping (indented key: value lines, or { key: value })"
    value = err.get("input")
    parent, _, key = loc.rpartition(".")
    if value is None:
        given = "nothing (an empty value)"
    elif isinstance(value, dict | list):
        given = "a mapping" if isinstance(value, dict) else "a list"
    elif isinstance(value, bool | int | float):
        given = repr(value).lower() if isinstance(value, bool) else repr(value)
    elif not isinstance(value, str) or loc in notes or is_secret_entry(key, value, parent):
        return msg
    else:
        shown = redact(value)
        given = repr(shown if len(shown) <= 60 else shown[:57] + "...")
    return f"{msg}; got {given}"


def _misspelled(root: type[BaseModel], errors: list[ErrorDetails]) -> dict[tuple[Any, ...], str]:
    """Unknown key's location -> the valid key it most likely misspells (``lm`` -> ``llm``)."""
    import difflib  # only when a key is unknown: nothing of it on a good config's load

    guesses = {}
    for err in errors:
        if err["type"] == "extra_forbidden":
            found = difflib.get_close_matches(str(err["loc"][-1]), _valid_keys(root, err["loc"]), n=1, cutoff=0.6)
            if found:
                guesses[err["loc"]] = found[0]
    return guesses
