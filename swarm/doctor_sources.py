"""Where a setting of the config file comes from, so that a ``swarm doctor`` fix says the change
that works: ``export SWARM_RUNNER=local`` when the file reads ``runner.kind`` from
``${SWARM_RUNNER}`` (the shipped config.yaml), ``set runner.kind: local in <file>`` when the file
writes it out (an exported variable would change nothing there)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.config_interpolation import ENV_REFERENCE

#: the keys doctor's fixes name, and the variable the shipped config.yaml reads each from
SHIPPED_VARIABLES = {
    "runner.kind": "SWARM_RUNNER",
    "runner.runpod.endpoint_id": "RUNPOD_ENDPOINT_ID",
    "runner.runpod.base_url": "RUNPOD_API_BASE",
}


@dataclass(frozen=True)
class ConfigSources:
    """The config file (``path``) and, for each key of ``SHIPPED_VARIABLES``, the raw text the
    file gives it (``None``: the key is not in the file). ``known``: the file was read; when it
    was not (no path, unreadable), the shipped config.yaml's variables are assumed."""

    path: Path | None = None
    raw: Mapping[str, str | None] = field(default_factory=dict)
    known: bool = False

    @classmethod
    def read(cls, path: Path | None) -> ConfigSources:
        """The sources of the config file at ``path``; not known when it cannot be read."""
        if path is None:
            return cls()
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):  # it loaded a moment ago: not worth a finding
            return cls(path)
        raw = {key: _text_at(document, key) for key in SHIPPED_VARIABLES}
        return cls(path, raw, known=True)

    def variable(self, key: str) -> str | None:
        """The variable that sets ``key`` (the file's whole value is ``${VAR}`` or
        ``${VAR:-default}``), else ``None`` (written in the file, or left to its default)."""
        if not self.known:
            return SHIPPED_VARIABLES.get(key)
        found = ENV_REFERENCE.fullmatch((self.raw.get(key) or "").strip())
        return found.group(1) if found else None

    def variables(self) -> dict[str, str] | None:
        """Key -> the variable that sets it (``runner_in_effect``'s ``variables``); ``None`` when
        the file was not read."""
        if not self.known:
            return None
        return {key: name for key in SHIPPED_VARIABLES if (name := self.variable(key))}

    def name(self, key: str) -> str:
        """How a fix names ``key``: its variable ("RUNPOD_ENDPOINT_ID"), else the key in the file."""
        return self.variable(key) or f"{key} in {self._file}"

    def describe(self, key: str) -> str:
        """``key`` and where it is set: "runner.runpod.base_url (RUNPOD_API_BASE)", or
        "runner.runpod.base_url in /path/config.yaml"."""
        variable = self.variable(key)
        return f"{key} ({variable})" if variable else f"{key} in {self._file}"

    def set_to(self, key: str, value: str) -> str:
        """The change that gives ``key`` the value ``value``: "export SWARM_RUNNER=local", or
        "set runner.kind: local in /path/config.yaml"."""
        variable = self.variable(key)
        return f"export {variable}={value}" if variable else f"set {key}: {value} in {self._file}"

    def unset(self, key: str) -> str:
        """The change that empties ``key``: "unset RUNPOD_ENDPOINT_ID" when the variable alone sets
        it (no default behind it), else "set runner.runpod.endpoint_id: '' in <file>"."""
        variable = self.variable(key)
        found = ENV_REFERENCE.fullmatch((self.raw.get(key) or "").strip()) if self.known else None
        if variable and not (found and found.group(2)):
            return f"unset {variable}"
        return f"set {key}: '' in {self._file}"

    @property
    def _file(self) -> str:
        return str(self.path) if self.path is not None else "the config file"


def _text_at(document: Any, key: str) -> str | None:
    """The raw value at the dotted ``key`` of the parsed file, as text; ``None`` when absent."""
    node = document
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None if node is None or isinstance(node, dict | list) else str(node)
