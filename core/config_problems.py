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

from core.config_refs import lenient_cross_reference_problems
from core.config_schema import SearchBackends, StorageBackends

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
    for err in exc.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"])
        loc = loc.replace(".[", "[")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(root, err["loc"])
            msg = "unknown key; remove it or check its spelling" + (
                f"; valid: {', '.join(valid)}" if valid else " (see README, Config reference)")
        elif err["type"] == "missing":
            msg = "required key is missing; add it (see README, Config reference)"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
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
