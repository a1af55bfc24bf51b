"""The provider secrets a raw (not yet interpolated) config names: which environment variables a
client forwards to a RunPod worker and a worker accepts. Read from the file's own text, apart from
``core.config`` (whose store calls it on each accepted file)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.config_interpolation import ENV_REFERENCE  # the ${VAR} forms that interpolation expands
from core.redact_config import SECRET_KEY_NAME

#: the sections of the raw config whose secrets a client forwards: model and search provider keys
CREDENTIAL_SECTIONS = (("models",), ("providers", "search"))
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def credential_names(raw: Any) -> dict[str, frozenset[str]]:
    """Per section of ``CREDENTIAL_SECTIONS`` (``"models"``, ``"search"``), the environment
    variables a raw (not yet interpolated) config takes provider secrets from: the value of an
    ``*_env`` key named like a secret (``api_key_env``), and each ``${VAR}`` in the value of a
    key named like one (``api_key: "${TAVILY_API_KEY}"``). A URL or a path is no secret."""
    found: dict[str, frozenset[str]] = {}
    for path in CREDENTIAL_SECTIONS:
        node = raw
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        found[path[-1]] = frozenset(_secret_references(node))
    return found


def _secret_references(node: Any, key: object = None) -> set[str]:
    if isinstance(node, Mapping):
        return set().union(*(_secret_references(value, name) for name, value in node.items()))
    if isinstance(node, list):
        return set().union(*(_secret_references(value, key) for value in node))
    if not isinstance(node, str) or key is None:
        return set()
    name = str(key)
    if name.endswith("_env") and SECRET_KEY_NAME.search(name[:-4]):
        return {node} if _ENV_NAME.fullmatch(node) else set()
    if SECRET_KEY_NAME.search(name):
        return {variable for variable, _default in ENV_REFERENCE.findall(node)}
    return set()
