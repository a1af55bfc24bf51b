"""Config: ``SwarmConfig`` (the whole of ``config.yaml``), ``${ENV}`` interpolation, loading, hot reload.

Every choice of model, backend, tier, fallback and route lives in config. The section models live
in ``core.config_schema`` and the checks across sections in ``core.config_refs``; every section
name stays importable from here. Loading is pure (no side effects beyond reading the file);
``ConfigStore`` re-reads an edited file before the next job and keeps the last good config when a
new one fails validation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from core.config_refs import cross_reference_problems, lenient_cross_reference_problems
from core.config_schema import (
    MAX_LOCAL_PROCESSES,
    BudgetSpec,
    CheckpointerSection,
    CircuitSpec,
    ConsensusRoute,
    DelegationRoute,
    ImageSection,
    LimitsSection,
    LLMSection,
    LocalRunnerSpec,
    LocalServerSpec,
    McpHttpSpec,
    McpSection,
    ModelSpec,
    ObservabilitySection,
    Price,
    ProvidersSection,
    RembgSpec,
    RetrySpec,
    RoutingSection,
    RunnerSection,
    RunPodRunnerSpec,
    SearchBackends,
    SearchSection,
    StorageBackends,
    StorageSection,
    StrictModel,
    ThreadsSection,
    UpscaleSpec,
    WorkerSection,
)
from core.errors import ConfigError
from core.paths import state_dir, unwritable_state
from core.redact import MASK, redact, redact_data
from core.redact_config import is_secret_entry, register_config_secrets
from core.rules import Tier

__all__ = [
    "DEFAULT_CONFIG_PATH", "MAX_LOCAL_PROCESSES", "PROJECT_ROOT", "BudgetSpec", "CheckpointerSection",
    "CircuitSpec", "ConfigStore", "ConsensusRoute", "DelegationRoute", "ImageSection", "LLMSection",
    "LimitsSection", "LocalRunnerSpec", "LocalServerSpec", "McpHttpSpec", "McpSection", "ModelSpec",
    "ObservabilitySection", "Price", "ProvidersSection", "RembgSpec", "RetrySpec", "RoutingSection",
    "RunPodRunnerSpec", "RunnerSection", "SearchSection", "StorageSection", "SwarmConfig",
    "ThreadsSection", "UpscaleSpec", "WorkerSection", "config_path", "interpolate", "load_config",
    "redacted_dump", "state_dir",
]

log = logging.getLogger("core.config")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.yaml"


class SwarmConfig(StrictModel):
    """The whole of ``config.yaml``, validated."""

    providers: ProvidersSection
    models: dict[str, ModelSpec]
    routing: RoutingSection
    checkpointer: CheckpointerSection = Field(default_factory=CheckpointerSection)  # its path: at load, not import
    runner: RunnerSection = RunnerSection()
    worker: WorkerSection = WorkerSection()
    limits: LimitsSection = LimitsSection()
    threads: ThreadsSection = ThreadsSection()
    observability: ObservabilitySection = ObservabilitySection()
    mcp: McpSection = McpSection()
    budgets: dict[Tier, BudgetSpec] = Field(default_factory=dict, description="per-tier token/cost budget per job")

    @model_validator(mode="after")
    def _cross_references(self) -> SwarmConfig:
        problems = cross_reference_problems(self.models, self.providers.llm, self.routing)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def family_of(self, name: str) -> str:
        """Family of a model name, or the name itself when it already is a family."""
        spec = self.models.get(name)
        return spec.family if spec else name


# --- interpolation -------------------------------------------------------------------------

#: ``${VAR}`` or ``${VAR:-default}``; a default holds no ``${`` (nesting is not supported)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:(?!\$\{)[^}])*))?\}")
_SUPPORTED_FORMS = "only ${VAR} and ${VAR:-default} are expanded"


def interpolate(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of operator config.

    An unset ``${VAR}`` becomes the empty string: a backend whose key or URL is empty is
    unavailable at call time, which is not a startup failure. Only config files go through
    this function, never request data.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if isinstance(value, str):
        return _VAR.sub(lambda m: _value_of(m.group(1), environ) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    return value


def _value_of(name: str, environ: Mapping[str, str]) -> str | None:
    """``environ[name]``; ``SWARM_HOME`` is always the state folder (``core.paths.state_dir``:
    absolute, ``XDG_CACHE_HOME`` honoured), so config and code never disagree on where it is."""
    if name == "SWARM_HOME":
        return str(state_dir(environ))
    return environ.get(name)


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(key path, text)`` of every string in the raw file, paths as errors name them (``a.b[0]``)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def _unsupported_forms(raw: Any) -> list[str]:
    """One line per string of the raw file that keeps a ``${`` once the supported forms are taken
    out (``${X-d}``, ``${X:?msg}``, ``${X:=d}``, ``${A:-${B}}``): it would stay literal."""
    lines = []
    for path, text in _strings(raw):
        rest = _VAR.sub("", text)
        if "${" in rest:
            form = rest[rest.index("${"):].split("}", 1)[0] + "}"
            where = "" if form == text else f" in {redact(text)!r}"  # a secret may sit in a default
            lines.append(f"{path or '(top level)'}: unsupported form {redact(form)!r}{where}; {_SUPPORTED_FORMS}")
    return lines


def _unset_notes(raw: Any, env: Mapping[str, str] | None) -> dict[str, str]:
    """Key path -> `` (from ${VAR}, unset)`` for each value that interpolation left empty because
    the variables it names are unset: an error about that key then says where the empty came from."""
    environ: Mapping[str, str] = os.environ if env is None else env
    notes = {}
    for path, text in _strings(raw):
        found = _VAR.findall(text)
        if found and not interpolate(text, environ):
            notes[path] = f" (from {', '.join('${' + name + '}' for name, _ in found)}, unset)"
    return notes


def _format_validation_error(
    exc: ValidationError, file: str, data: Any = None, notes: Mapping[str, str] | None = None
) -> str:
    """One line per problem, each with the file; ``data`` (the interpolated file): also the
    cross-references pydantic never reached (its after-validator runs only once every field is
    valid), so one run names every bad key."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"])
        loc = loc.replace(".[", "[")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(err["loc"])
            msg = "unknown key; remove it or check its spelling" + (
                f"; valid: {', '.join(valid)}" if valid else " (see README, Config reference)")
        elif err["type"] == "missing":
            msg = "required key is missing; add it (see README, Config reference)"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        for part in msg.split("\n"):  # the cross-reference check joins its problems with line breaks
            lines.append(f"{file}: {loc + ': ' if loc else ''}{part}")
    if data is not None and not any(not err["loc"] for err in exc.errors()):
        lines += [f"{file}: {problem}" for problem in _unreached_cross_references(data)]
    for i, line in enumerate(lines):  # the cross-reference lines name their key first, too
        key = line.removeprefix(f"{file}: ").split(": ", 1)[0]
        lines[i] += (notes or {}).get(key, "")
    return "invalid config:\n  " + "\n  ".join(lines)


def _unreached_cross_references(data: Any) -> list[str]:
    """The cross-reference problems of ``data`` (the raw file), each part read on its own."""
    return lenient_cross_reference_problems(data)


#: the keys whose settings ``SearchSection``/``StorageSection`` keep as plain dicts, checked
#: against these models (so an unknown key there lists these models' fields)
_SETTINGS_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    ("providers", "search", "backends"): SearchBackends,
    ("providers", "storage", "backends"): StorageBackends,
}


def _valid_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the section holding ``loc``'s last key accepts (empty where it cannot be told)."""
    node: Any = SwarmConfig
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


#: PyYAML's libyaml-backed safe loader where the wheel has it (the same documents, ~13x faster:
#: 2 ms instead of 27 for config.yaml, and ~100 ms less on a cold start, where the pure-Python
#: parser's code is loaded too); else the pure-Python one. Both read config.yaml the same (a test);
#: libyaml is laxer in corners (a tab after ``key:``), never stricter on what a config holds
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_BASE_LOADER):  # type: ignore[misc]
    """The safe loader, refusing a key written twice in one mapping (YAML's last-wins would
    silently drop the first). Only the construction step is Python: libyaml still parses."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *base``: overriding what a merge brings is what it is for
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base constructor names it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} at line {line} (first at line {first}); keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


_SAFE_LOADER: Any = _UniqueKeyLoader


def _read_yaml(file: Path) -> Any:
    """The parsed document of ``file``; ``ConfigError`` naming the file for anything unreadable."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found; set SWARM_CONFIG or pass --config", file=str(file)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory; pass the config file itself (e.g. its config.yaml)", file=str(file)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
            file=str(file),
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it ({exc.strerror or exc}); check the path and its permissions",
                          file=str(file)) from None
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        if str(problem).startswith("duplicate key"):
            where = ""  # the problem names its line
        raise ConfigError(f"not valid YAML{where}: {problem}", file=str(file)) from None


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> SwarmConfig:
    """Read, interpolate and validate one config file; raise ``ConfigError`` naming every bad key."""
    file = Path(path) if path else config_path()
    raw = _read_yaml(file)
    if not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping with providers, models, routing", file=str(file))
    unsupported = [f"{file}: {line}" for line in _unsupported_forms(raw)]
    data = interpolate(raw, env)
    try:
        config = SwarmConfig.model_validate(data)
    except ValidationError as exc:
        message = _format_validation_error(exc, str(file), data, _unset_notes(raw, env))
        if unsupported:
            message += "\n  " + "\n  ".join(unsupported)
        raise ConfigError(message) from None
    if unsupported:
        raise ConfigError("invalid config:\n  " + "\n  ".join(unsupported))
    register_config_secrets(config.model_dump(mode="json"))  # a key written literally in the file, too
    return config


def config_path(explicit: str | Path | None = None) -> Path:
    """``--config`` beats ``SWARM_CONFIG`` beats the project's own ``config.yaml``."""
    chosen = explicit or os.environ.get("SWARM_CONFIG")
    return Path(chosen).expanduser() if chosen else DEFAULT_CONFIG_PATH


def redacted_dump(config: SwarmConfig) -> dict[str, Any]:
    """The effective config as data, with every secret-looking field masked."""
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (MASK if is_secret_entry(k, v) else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return redact_data(walk(config.model_dump(mode="json")))


def check_state_folders(config: SwarmConfig) -> None:
    """``ConfigError`` naming each state folder this config writes that cannot be made or written
    (read-only HOME, ``SWARM_HOME`` naming a file): the doors check at start, so a job never
    fails as an internal error over it."""
    folders = [("SWARM_HOME", state_dir())]
    if config.checkpointer.kind == "sqlite":
        folders.append(("checkpointer.path", Path(config.checkpointer.path).expanduser().absolute().parent))
    if (problems := unwritable_state(folders)):
        text = "; ".join(why if n == 0 else f"{key}: {why}" for n, (key, why) in enumerate(problems))
        raise ConfigError(f"{text}; set SWARM_HOME to a writable folder (or the key in config.yaml)", key=problems[0][0])


class ConfigStore:
    """Hot swap: hands out the current config, re-reading the file when it changed.

    A changed file that fails validation is refused and logged; the last good config keeps
    serving and ``last_error`` says why.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = config_path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, str] | None = None
        self.last_error: str | None = None
        self.version = 0
        self._config = load_config(self.path)
        self._stamp = self._read_stamp()

    def _read_stamp(self) -> tuple[int, int, str] | None:
        try:
            stat = self.path.stat()
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, digest)

    def current(self) -> SwarmConfig:
        """The config for the next job (reloaded if the file changed and still validates)."""
        with self._lock:
            try:
                stat = self.path.stat()
            except OSError as exc:
                self.last_error = f"{self.path}: cannot read ({exc.strerror}); keeping the last good config"
                log.error(self.last_error)
                return self._config
            if self._stamp and (stat.st_mtime_ns, stat.st_size) == self._stamp[:2]:
                return self._config
            stamp = self._read_stamp()
            if stamp and self._stamp and stamp[2] == self._stamp[2]:
                self._stamp = stamp
                return self._config
            try:
                new = load_config(self.path)
            except ConfigError as exc:
                self.last_error = f"{exc}\nrefused the edited config; the last good one keeps serving"
                log.error(self.last_error)
                self._stamp = stamp
                return self._config
            self._config, self._stamp, self.last_error = new, stamp, None
            self.version += 1
            log.info("config reloaded from %s (version %d)", self.path, self.version)
            return self._config
