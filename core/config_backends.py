"""The search and storage backends' settings in ``config.yaml``, one strict model per shipped
backend, and the checks ``core.config_providers``'s search and storage sections run with them.

``StrictModel`` (every config section's base) lives here so both modules share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.errors import InputError
from core.storage_keys import check_prefix


class StrictModel(BaseModel):
    """A config section: unknown keys are an error, and a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .nan: "a finite number", not a limit

    @model_validator(mode="before")
    @classmethod
    def _empty_subsections(cls, data: Any) -> Any:
        """A section inside this one whose keys are all commented out is YAML null: it reads as
        its defaults, as a removed one does (``runner.local:`` was "Input should be a valid
        dictionary or instance of LocalRunnerSpec"). Only a field that holds a section and has
        a default: where null is a value of its own (``reviewer: null``), it stays."""
        if not isinstance(data, dict):
            return data
        empty = [key for key, value in data.items() if value is None and _section_with_default(cls.model_fields.get(key))]
        return {k: v for k, v in data.items() if k not in empty} if empty else data

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        """``true`` where a count or a number of seconds is expected is a mistake, not 1: pydantic
        reads a boolean as 1 or 0 (``max_running_jobs: true`` ran one job at a time, and
        ``concurrency: yes`` loaded as 1, without a word)."""
        if isinstance(value, bool) and info.field_name is not None:
            expected = _number_expected(cls.model_fields[info.field_name].annotation)
            if expected is not None:
                raise ValueError(f"expected {expected}, got {str(value).lower()}")
        return value


class SearxngSpec(StrictModel):
    """``providers.search.backends.searxng`` (providers/search/searxng.py)."""

    url: str = Field(default="", description="the instance's base URL; empty -> the backend is skipped")
    format: Literal["json"] = "json"
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    categories: str | None = None
    language: str | None = None
    proxy: str | None = None


class TavilySpec(StrictModel):
    """``providers.search.backends.tavily`` (providers/search/tavily.py)."""

    api_key: str = Field(default="", description="empty -> the backend is skipped")
    base_url: str | None = None
    timeout_s: float = Field(default=15.0, gt=0, le=600)
    search_depth: Literal["basic", "advanced", "fast", "ultra-fast"] = "basic"
    proxy: str | None = None


class LocalIndexSpec(StrictModel):
    """``providers.search.backends.local`` (providers/search/local_index.py)."""

    paths: list[str] | str = Field(default_factory=lambda: ["docs/corpus"])
    index_path: str | None = None
    refresh_interval_s: float = Field(default=60.0, ge=0)


class SearchBackends(StrictModel):
    """The search backends this project ships, by the name config gives them (and the registry
    in providers/registry.py maps; tests/test_config_checks.py checks the two agree)."""

    searxng: SearxngSpec | None = None
    tavily: TavilySpec | None = None
    local: LocalIndexSpec | None = None


class LocalStorageSpec(StrictModel):
    """``providers.storage.backends.local`` (providers/storage/local.py)."""

    root: str | None = None
    public_base_url: str | None = None


class S3StorageSpec(StrictModel):
    """``providers.storage.backends.s3`` (providers/storage/s3.py)."""

    bucket: str = Field(default="", description="empty -> choosing s3 fails with the fix")
    prefix: str = Field(default="", description="keys go under it: a relative path (a trailing '/' allowed)")
    endpoint_url: str | None = Field(default=None, pattern=r"^(?:https?://[^\s/]+\S*)?$",
                                     description="http(s)://host[:port]; empty: AWS")
    region: str | None = None
    #: S3 signs a URL for at most 7 days
    presign_expiry_s: int = Field(default=3600, ge=1, le=604_800)
    timeout_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        """Checked at load: "/swarm/" passed, and every image job then failed as the caller's bad
        input, naming a field ``prefix`` no tool has."""
        try:
            return check_prefix(value)
        except InputError as exc:
            raise ValueError(exc.to_dict()["message"].removeprefix("prefix: ")) from None


class StorageBackends(StrictModel):
    """The storage backends this project ships, by name (as ``SearchBackends``)."""

    local: LocalStorageSpec | None = None
    s3: S3StorageSpec | None = None


SEARCH_BACKENDS: tuple[str, ...] = tuple(SearchBackends.model_fields)
STORAGE_BACKENDS: tuple[str, ...] = tuple(StorageBackends.model_fields)


def checked_backends(specs: type[StrictModel], backends: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``backends`` validated against their specs (every problem at once, each at its key), as the
    plain settings each backend's ``from_config`` reads: the keys written, values of the right type."""
    checked = specs.model_validate(backends)
    return {name: getattr(checked, name).model_dump(exclude_unset=True) for name in backends}


def unknown_name(loc: tuple[str | int, ...], name: Any, what: str, valid: list[str]) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("unknown_backend", f"{name!r} is not a {what}; valid: {', '.join(valid) or '(none)'}"),
        loc=loc, input=name,
    )


def raise_all(title: str, problems: list[InitErrorDetails]) -> None:
    """Raise ``problems`` as one ValidationError: pydantic reports each at its own key."""
    if problems:
        raise ValidationError.from_exception_data(title, problems)


def only_local_index() -> dict[str, dict[str, Any]]:
    """No ``backends`` written: the local index, with its defaults (the chain needs settings)."""
    return {"local": {}}


def chain_problems(default: Any, chain: Any, backends: Any) -> list[InitErrorDetails]:
    """``default`` and ``fallback_chain`` entries that name no configured search backend (read
    leniently: what is not a string, or not a list of them, is left to the field checks)."""
    if not isinstance(backends, Mapping):
        backends = {"local": {}} if backends is None else None
    if backends is None:
        return []
    targets: list[tuple[tuple[str | int, ...], Any]] = [(("default",), default)]
    if isinstance(chain, list):
        targets += [(("fallback_chain", i), name) for i, name in enumerate(chain)]
    # the local index needs no settings (its defaults search the bundled corpus)
    configured = list(dict.fromkeys([*(str(name) for name in backends), "local"]))
    return [unknown_name(loc, name, "configured search backend (one with settings under backends, or local)", configured)
            for loc, name in targets if isinstance(name, str) and name not in configured]


def as_details(exc: ValidationError) -> list[InitErrorDetails]:
    """``exc``'s problems as they were (type, key, message), to raise again with more."""
    return [InitErrorDetails(type=PydanticCustomError(err["type"], err["msg"]), loc=err["loc"], input=err["input"])
            for err in exc.errors()]


def _number_expected(annotation: Any) -> str | None:
    """What a field of type ``annotation`` holds when it is a number (``int``, ``float``, either or
    ``None``), said as its error says it; ``None`` for any other type."""
    kinds = set(get_args(annotation)) - {type(None)} if get_origin(annotation) in (Union, UnionType) else {annotation}
    if kinds == {int}:
        return "a whole number"
    if kinds and kinds <= {int, float}:
        return "a number"
    return None


def _section_with_default(field: Any) -> bool:
    """Whether a model field holds a config section (never null) and has a default."""
    if field is None or field.is_required():
        return False
    kind = field.annotation
    return isinstance(kind, type) and issubclass(kind, BaseModel)
