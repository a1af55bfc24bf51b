"""Provider keys a client forwards with a RunPod job, applied to that job only.

The RunPod executor sends the client's values of the secrets config names for a model or a search
backend (``api_key_env``, or a ``${VAR}`` in a key named like a secret) in the job's input under
``CREDENTIALS_FIELD``, as RunPod's own API takes per-request credentials in the body (``s3Config``).
The worker takes the field out before anything validates, stores, logs or traces the job, checks
it (``accept_credentials``) and runs the job inside ``credentials_scope``. A backend reads a key
with ``credential(name)``: the process's own environment first (the endpoint owner set it, so it
wins), then the value the job's client forwarded; ``missing_credential`` says why a key is absent,
and where.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
from collections.abc import Collection, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

import yaml

from core.config import SwarmConfig, parse_yaml
from core.credential_refs import credential_names
from core.errors import InputError
from core.redact import MIN_SECRET_CHARS, register_forwarded_secret

log = logging.getLogger("core.credentials")

#: the reserved field of a job's input that carries the client's credentials
CREDENTIALS_FIELD = "_credentials"
#: the longest value accepted for one credential (no provider key comes near it)
MAX_CREDENTIAL_CHARS = 4096


@dataclasses.dataclass(frozen=True, repr=False)
class JobCredentials:
    """What one job's client forwarded, as the worker accepted it.

    Attributes:
        values: name -> value this job uses (the worker has no value of its own for them).
        kept: forwarded names whose value the worker has itself, which wins.
        ignored: how many forwarded names this worker's config does not use.
    """

    values: Mapping[str, str] = dataclasses.field(default_factory=dict)
    kept: tuple[str, ...] = ()
    ignored: int = 0

    def __repr__(self) -> str:  # names only: a value must never reach a log through a repr
        return f"JobCredentials(values={sorted(self.values)}, kept={list(self.kept)}, ignored={self.ignored})"

    def detail(self) -> str | None:
        """What a trace says about them, by name only (``None`` when the client sent none)."""
        parts = []
        if self.values:
            parts.append(f"credentials from the client: {', '.join(sorted(self.values))}")
        if self.kept:
            parts.append(f"the worker's own kept over the client's: {', '.join(self.kept)}")
        if self.ignored:
            parts.append(f"{self.ignored} forwarded name(s) this worker's config does not use, ignored")
        return "; ".join(parts) or None


_current: ContextVar[JobCredentials | None] = ContextVar("swarm_job_credentials", default=None)


def credential(name: str) -> str | None:
    """The value of secret ``name`` for the running job: this process's environment, else what the
    job's client forwarded; ``None`` when neither has one (an empty value counts as unset)."""
    own = os.environ.get(name)
    if own:
        return own
    job = _current.get()
    return (job.values.get(name) or None) if job is not None else None


#: salts the fingerprint of a forwarded key (``credential_holder``): a per-process secret, so the
#: fingerprint a circuit is named by says nothing of the key outside this process
_FINGERPRINT_SALT = os.urandom(16)


def credential_holder(name: str | None) -> str | None:
    """Whose key ``name`` a call uses for the running job: ``None`` for this process's own (or no
    key), else ``"client key <fingerprint>"`` for the key this job's client forwarded, the same
    for every job that forwards the same value. A circuit breaker keys on it: a client's wrong key
    opens the circuit for that key, not for the worker's own or another client's."""
    if not name or os.environ.get(name):
        return None
    job = _current.get()
    value = job.values.get(name) if job is not None else None
    if not value:
        return None
    digest = hashlib.blake2b(value.encode(), key=_FINGERPRINT_SALT, digest_size=5).hexdigest()
    return f"client key {digest}"


def missing_credential(name: str) -> str | None:
    """Why ``name`` has no value for the running job, saying where it is missing; ``None`` if set."""
    if credential(name):
        return None
    if _current.get() is None:
        return f"{name} is not set"
    return f"{name} is not set on this worker and the client did not send it"


@contextlib.contextmanager
def credentials_scope(job: JobCredentials | None) -> Iterator[None]:
    """Run the block (and every task it starts) with ``job``'s forwarded credentials; ``None``
    leaves the process's own environment alone (a job run in-process, no client to speak of)."""
    token = _current.set(job)
    try:
        yield
    finally:
        _current.reset(token)


def current_credentials() -> JobCredentials | None:
    """The running job's forwarded credentials (``None`` outside a forwarded job)."""
    return _current.get()


def accept_credentials(raw: Any, names: Collection[str]) -> JobCredentials:
    """Check a job's ``CREDENTIALS_FIELD`` and register each value accepted as a secret (one of
    the most recent ``core.redact.FORWARDED_SECRETS_KEPT`` a client forwarded: a worker serving
    many clients does not keep them all).

    Args:
        raw: the field as the client sent it (``None``: it sent none).
        names: the environment variables this worker's config takes provider secrets from; any
            other name is ignored (counted, never used).

    Raises:
        InputError: the field is no object, or a value is no string, shorter than
            ``MIN_SECRET_CHARS`` (it could not be masked) or longer than ``MAX_CREDENTIAL_CHARS``;
            the error names the field, never the value.
    """
    if raw is None:
        return JobCredentials()
    if not isinstance(raw, Mapping):
        raise InputError(f"must be an object of environment variable name -> value, not {type(raw).__name__}",
                         field=CREDENTIALS_FIELD)
    values: dict[str, str] = {}
    kept: list[str] = []
    ignored = 0
    for name, value in raw.items():
        if not isinstance(name, str) or name not in names:
            ignored += 1
            continue
        where = f"{CREDENTIALS_FIELD}.{name}"
        if not isinstance(value, str):
            raise InputError(f"must be a string, not {type(value).__name__}", field=where)
        if len(value) > MAX_CREDENTIAL_CHARS:
            raise InputError(f"is {len(value)} characters, over the limit of {MAX_CREDENTIAL_CHARS}", field=where)
        if not value.strip():
            continue  # empty counts as unset, as in the environment
        if len(value) < MIN_SECRET_CHARS:
            raise InputError(f"is shorter than {MIN_SECRET_CHARS} characters: no provider key is, and a value"
                             " this short could not be masked in logs and traces", field=where)
        register_forwarded_secret(value)
        if os.environ.get(name):
            kept.append(name)
        else:
            values[name] = value
    return JobCredentials(values, tuple(sorted(kept)), ignored)


_names_cache: dict[Path, tuple[tuple[int, int], dict[str, frozenset[str]]]] = {}


class NamesSource(Protocol):
    """What knows the secrets the config in force names (``core.config.ConfigStore``)."""

    def credential_names(self) -> dict[str, frozenset[str]]: ...


def config_credential_names(config_file: Path | NamesSource) -> dict[str, frozenset[str]]:
    """``credential_names`` of the config in force (a ``ConfigStore``), or of a config file, re-read
    only when the file changed (each job asks)."""
    if not isinstance(config_file, Path):
        return config_file.credential_names()
    try:
        stat = config_file.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = _names_cache.get(config_file)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        names = credential_names(parse_yaml(config_file.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:  # the loaded config stands; only forwarding stops
        log.warning("cannot read %s for the provider keys it names (%s): no credentials are forwarded or accepted",
                    config_file, type(exc).__name__)
        return {}
    _names_cache[config_file] = (stamp, names)
    return names


def provider_credential_names(config: SwarmConfig, config_file: Path | NamesSource) -> frozenset[str]:
    """Every provider secret ``config_file`` names, never the RunPod key (``runner.runpod.api_key_env``)."""
    names = frozenset().union(*config_credential_names(config_file).values())
    return names - {config.runner.runpod.api_key_env}


def client_credentials(config: SwarmConfig, config_file: Path | NamesSource) -> dict[str, str]:
    """The provider keys a client sends with a RunPod job: the value here of each variable
    ``config_file`` names for a model or search backend (never the RunPod key), unless
    ``runner.runpod.forward_credentials`` is off. Read at each submit, so a key exported after a
    server started is sent too."""
    if not config.runner.runpod.forward_credentials:
        return {}
    names = provider_credential_names(config, config_file)
    sent = {name: value for name in sorted(names) if (value := os.environ.get(name, "")).strip()}
    # a value too short to mask is no provider key: the worker refused the whole job for it (an
    # ``InputError`` on every model job, where the same setup here fell back past that model)
    short = sorted(name for name, value in sent.items() if len(value) < MIN_SECRET_CHARS)
    if short:
        log.warning("not sent to the RunPod worker: %s (shorter than %d characters, no provider key is);"
                    " the worker treats them as unset", ", ".join(short), MIN_SECRET_CHARS)
    return {name: value for name, value in sent.items() if name not in short}
