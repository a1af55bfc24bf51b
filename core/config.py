"""Config: ``SwarmConfig`` (the whole of ``config.yaml``), loading, hot reload.

Every choice of model, backend, tier, fallback and route lives in config. The section models live
in ``core.config_schema``, the checks across sections in ``core.config_refs``, ``${ENV}``
interpolation in ``core.config_interpolation`` and how a failed validation reads in
``core.config_problems``; every section name and ``interpolate`` stay importable from here.
Loading is pure (no side effects beyond reading the file);
``ConfigStore`` re-reads an edited file before the next job and keeps the last good config when a
new one fails validation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from core.config_interpolation import (
    bare_references,
    interpolate,
    references,
    unset_notes,
    unsupported_forms,
)
from core.config_problems import format_validation_error
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
from core.paths import state_dir, unwritable_state
from core.redact import MASK, redact_data
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

    @model_validator(mode="before")
    @classmethod
    def _empty_budgets(cls, data: Any) -> Any:
        """``budgets:`` or a tier's budget with every key commented out (YAML null) is no limit, as
        a removed one is; an empty section is its defaults already (``StrictModel``)."""
        if isinstance(data, dict) and "budgets" in data:
            budgets = data["budgets"]
            if budgets is None:
                return {k: v for k, v in data.items() if k != "budgets"}
            if isinstance(budgets, dict):
                return {**data, "budgets": {tier: {} if spec is None else spec for tier, spec in budgets.items()}}
        return data

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


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` on libyaml where the wheel has it: for re-reading a config that already
    loaded (the names of its secrets), where ``safe_load``'s pure-Python parser cost ~30 ms of a
    cold start at the first ``tools/list``."""
    return yaml.load(text, Loader=_BASE_LOADER)


def _not_found(file: Path) -> str:
    """What to do about a config file that is not there, by who named it."""
    if file == DEFAULT_CONFIG_PATH:
        return "file not found; set SWARM_CONFIG or pass --config"
    named = os.environ.get("SWARM_CONFIG", "")
    if named and Path(named).expanduser() == file:
        return "file not found (named by SWARM_CONFIG); check the path, or unset SWARM_CONFIG to use the project's config.yaml"
    return "file not found; check the path (leave out --config to use the project's config.yaml)"


def _read_yaml(file: Path) -> Any:
    """The parsed document of ``file``; ``ConfigError`` naming the file for anything unreadable."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(_not_found(file), file=str(file)) from None
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
        # where the parser found it may be lines after the mistake (an unclosed quote on line 63 read
        # on to line 69): the construct it was in, and where that began, point back at it
        context, begun = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and begun is not None and mark is not None and begun.line != mark.line:
            problem = f"{problem} ({context} that begins at line {begun.line + 1}; look there first)"
        raise ConfigError(f"not valid YAML{where}: {problem}", file=str(file)) from None


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> SwarmConfig:
    """Read, interpolate and validate one config file; raise ``ConfigError`` naming every bad key."""
    file = Path(path) if path else config_path()
    raw = _read_yaml(file)
    if not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping with providers, models, routing", file=str(file))
    unsupported = [f"{file}: {line}" for line in unsupported_forms(raw)]
    data = interpolate(raw, env)
    try:
        config = SwarmConfig.model_validate(data)
    except ValidationError as exc:
        message = format_validation_error(exc, str(file), SwarmConfig, data, unset_notes(raw, env))
        if unsupported:
            message += "\n  " + "\n  ".join(unsupported)
        raise ConfigError(message) from None
    if unsupported:
        raise ConfigError("invalid config:\n  " + "\n  ".join(unsupported))
    register_config_secrets(config.model_dump(mode="json"))  # a key written literally in the file, too
    for name, spec in config.models.items():  # which variables each model's name is read from
        written = (raw.get("models") or {}).get(name)
        spec._litellm_model_env = references(str(written.get("litellm_model") or "") if isinstance(written, dict) else "")
    for line in bare_references(raw, env):
        _warn_once(f"{file}: {line}")
    return config


_warned: set[str] = set()


def _warn_once(line: str) -> None:
    """Log ``line`` as a warning the first time this process sees it (a hot reload reads the file again)."""
    if line not in _warned:
        _warned.add(line)
        log.warning("%s", line)


def _load_text(text: bytes, path: Path) -> SwarmConfig:
    """``load_config`` of ``text`` as if it were ``path``'s (a copy beside it, removed after)."""
    import tempfile

    try:  # beside it first: a relative path in it reads as it did
        copy = tempfile.NamedTemporaryFile("wb", suffix=".yaml", dir=path.parent, prefix=".swarm-last-good-")
    except OSError:  # a read-only folder (a mounted ConfigMap): the temp folder
        copy = tempfile.NamedTemporaryFile("wb", suffix=".yaml", prefix=".swarm-last-good-")
    with copy:
        copy.write(text)
        copy.flush()
        return load_config(copy.name)


def _names_of(text: bytes, otherwise: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    from core.credential_refs import credential_names

    try:
        return credential_names(parse_yaml(text.decode("utf-8")))
    except (UnicodeDecodeError, yaml.YAMLError):
        return otherwise


def config_path(explicit: str | Path | None = None) -> Path:
    """``--config`` beats ``SWARM_CONFIG`` beats the project's own ``config.yaml``."""
    chosen = explicit or os.environ.get("SWARM_CONFIG")
    return Path(chosen).expanduser() if chosen else DEFAULT_CONFIG_PATH


def redacted_dump(config: SwarmConfig) -> dict[str, Any]:
    """The effective config as data, with every secret-looking field masked."""
    def walk(node: Any, parent: object = None) -> Any:
        if isinstance(node, dict):
            return {k: (MASK if is_secret_entry(k, v, parent) else walk(v, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return redact_data(walk(config.model_dump(mode="json")))


def check_state_folders(config: SwarmConfig, *, create: bool = True) -> None:
    """``ConfigError`` naming each state folder this config writes that cannot be made or written
    (read-only HOME, ``SWARM_HOME`` naming a file): the doors check at start, so a job never
    fails as an internal error over it. ``create=False``: nothing is made (``config check``, a
    reload of an edited file: a half-typed path made folders)."""
    folders = [("SWARM_HOME", state_dir())]
    if config.checkpointer.kind == "sqlite":
        folders.append(("checkpointer.path", Path(config.checkpointer.path).expanduser().absolute().parent))
    if (problems := unwritable_state(folders, create=create)):
        text = "; ".join(why if n == 0 else f"{key}: {why}" for n, (key, why) in enumerate(problems))
        raise ConfigError(f"{text}; set SWARM_HOME to a writable folder (or the key in config.yaml)", key=problems[0][0])


class ConfigStore:
    """Hot swap: hands out the current config, re-reading the file when it changed.

    A changed file that fails validation is refused and logged; the last good config keeps
    serving and ``last_error`` says why.
    """

    def __init__(self, path: str | Path | None = None, *, last_good: bytes | None = None) -> None:
        """``last_good``: the text another process serves, taken when the file on disk is refused
        (a worker process started while an edit that failed validation was on disk failed every
        job, where its parent went on serving)."""
        self.path = config_path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, str] | None = None
        self.last_error: str | None = None
        self.version = 0
        self._good: str | None = None
        self.good_text: bytes | None = None
        self._names: dict[str, frozenset[str]] = {}
        try:
            self._config = load_config(self.path)
        except ConfigError as exc:
            if last_good is None:
                raise
            self._config = _load_text(last_good, self.path)
            self.last_error = f"{exc}\nrefused the edited config; the last good one keeps serving"
            self._stamp, self._good = self._read_stamp(), hashlib.sha256(last_good).hexdigest()
            self.good_text = last_good
            self._names = _names_of(last_good, {})
            return
        self._stamp = self._read_stamp()
        self._good = self._stamp[2] if self._stamp else None  # the digest of the file the config in use came from
        self.good_text = self._text_of_good()
        self._names = self._read_names()

    def _text_of_good(self) -> bytes | None:
        """The bytes of the file in use, when they are still the ones it loaded."""
        try:
            text = self.path.read_bytes()
        except OSError:
            return self.good_text
        return text if hashlib.sha256(text).hexdigest() == self._good else self.good_text

    def _read_stamp(self) -> tuple[int, int, str] | None:
        try:
            stat = self.path.stat()
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, digest)

    def _read_names(self) -> dict[str, frozenset[str]]:
        """The provider secrets the file in use names (``core.credential_refs.credential_names``), read
        when it is accepted: a refused edit's file named a secret that was then forwarded to RunPod."""
        return self._names if self.good_text is None else _names_of(self.good_text, self._names)

    def credential_names(self) -> dict[str, frozenset[str]]:
        """Per section, the variables the config in force takes provider secrets from (an edit
        that was refused names none)."""
        self.current()
        with self._lock:
            return self._names

    def current(self) -> SwarmConfig:
        """The config for the next job (reloaded if the file changed and still validates)."""
        with self._lock:
            try:
                stat = self.path.stat()
            except OSError as exc:
                unread = f"{self.path}: cannot read ({exc.strerror}); keeping the last good config"
                if unread != self.last_error:  # once, not at each look (the MCP server looks every 5 s)
                    log.error(unread)
                self.last_error = unread
                self._stamp = None  # read it whole when it is back
                return self._config
            if self._stamp and (stat.st_mtime_ns, stat.st_size) == self._stamp[:2]:
                return self._config
            stamp = self._read_stamp()
            if stamp and stamp[2] == self._good:  # back to the text in use (a checkout, a save undone)
                self._stamp, self.last_error = stamp, None
                return self._config
            if stamp and self._stamp and stamp[2] == self._stamp[2]:
                self._stamp = stamp
                return self._config
            try:
                new = load_config(self.path)
                check_state_folders(new, create=False)  # a checkpointer.path no job could open failed every job
            except ConfigError as exc:
                refused = f"{exc}\nrefused the edited config; the last good one keeps serving"
                if stamp is not None or refused != self.last_error:  # a file it cannot read is looked at
                    log.error(refused)  # again each time (no stamp to compare): said once, not every 5 s
                self.last_error = refused
                self._stamp = stamp
                return self._config
            self._config, self._stamp, self.last_error = new, stamp, None
            self._good = stamp[2] if stamp else None
            self.good_text = self._text_of_good()
            self._names = self._read_names()
            self.version += 1
            log.info("config reloaded from %s (version %d)", self.path, self.version)
            return self._config
