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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from core.config_refs import cross_reference_problems
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
    SearchSection,
    StorageSection,
    StrictModel,
    ThreadsSection,
    UpscaleSpec,
    WorkerSection,
)
from core.errors import ConfigError
from core.redact import MASK, redact_data, register_config_secrets
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
_SECRET_FIELD = re.compile(r"(?i)(api_key|secret|token|password|dsn)$")


class SwarmConfig(StrictModel):
    """The whole of ``config.yaml``, validated."""

    providers: ProvidersSection
    models: dict[str, ModelSpec]
    routing: RoutingSection
    checkpointer: CheckpointerSection = CheckpointerSection()
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

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of operator config.

    An unset ``${VAR}`` becomes the empty string: a backend whose key or URL is empty is
    unavailable at call time, which is not a startup failure. Only config files go through
    this function, never request data.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if isinstance(value, str):
        return _VAR.sub(lambda m: environ.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    return value


def _format_validation_error(exc: ValidationError, file: str, data: Any = None) -> str:
    """One line per problem, each with the file; ``data`` (the interpolated file): also the
    cross-references pydantic never reached (its after-validator runs only once every field is
    valid), so one run names every bad key."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"])
        loc = loc.replace(".[", "[")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling (see README, Config reference)"
        elif err["type"] == "missing":
            msg = "required key is missing; add it (see README, Config reference)"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        for part in msg.split("\n"):  # the cross-reference check joins its problems with line breaks
            lines.append(f"{file}: {loc + ': ' if loc else ''}{part}")
    if data is not None and not any(not err["loc"] for err in exc.errors()):
        lines += [f"{file}: {problem}" for problem in _unreached_cross_references(data)]
    return "invalid config:\n  " + "\n  ".join(lines)


def _unreached_cross_references(data: Any) -> list[str]:
    """The cross-reference problems of ``data``, read leniently: a model entry with a bad field
    still counts under its name and family, and an LLM section with one still names its models
    (only ``default``, ``tiers`` and ``fallback_chain`` are read). Best effort: none where the
    references themselves cannot be read."""
    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    shapes: dict[str, Any] = {  # what a lenient read keeps: only values of the right shape
        "family": lambda v: isinstance(v, str),
        "default": lambda v: isinstance(v, str),
        "fallback_chain": strings,
        "tiers": lambda v: isinstance(v, dict) and all(isinstance(k, str) and strings(t) for k, t in v.items()),
    }

    def lenient(model: type[Any], raw: Any, keys: tuple[str, ...]) -> Any:
        try:
            return model.model_validate(raw)
        except ValidationError:
            return model.model_construct(**{k: raw[k] for k in keys if k in raw and shapes[k](raw[k])})

    try:
        models = {str(name): lenient(ModelSpec, spec, ("family",)) for name, spec in data["models"].items()}
        llm = lenient(LLMSection, data["providers"]["llm"], ("default", "tiers", "fallback_chain"))
        routing = RoutingSection.model_validate(data["routing"])
        return cross_reference_problems(models, llm, routing)
    except (ValidationError, KeyError, TypeError, AttributeError):
        return []


#: PyYAML's libyaml-backed safe loader where the wheel has it (the same documents, ~13x faster:
#: 2 ms instead of 27 for config.yaml, and ~100 ms less on a cold start, where the pure-Python
#: parser's code is loaded too); else the pure-Python one. Both read config.yaml the same (a test);
#: libyaml is laxer in corners (a tab after ``key:``), never stricter on what a config holds
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> SwarmConfig:
    """Read, interpolate and validate one config file; raise ``ConfigError`` naming the keys."""
    file = Path(path) if path else config_path()
    try:
        raw = yaml.load(file.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except FileNotFoundError:
        raise ConfigError("file not found; set SWARM_CONFIG or pass --config", file=str(file)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", file=str(file)) from None
    if not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping with providers, models, routing", file=str(file))
    data = interpolate(raw, env)
    try:
        config = SwarmConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, str(file), data)) from None
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
            return {
                k: (MASK if _SECRET_FIELD.search(str(k)) and v else walk(v)) for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return redact_data(walk(config.model_dump(mode="json")))


def state_dir() -> Path:
    """Where jobs, checkpoints and the local index live unless config says otherwise."""
    return Path(os.environ.get("SWARM_HOME") or "~/.cache/runpod-swarm").expanduser()


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
