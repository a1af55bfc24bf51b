"""A RunPod worker masks the provider keys clients forward, but keeps only the most recent ones:
an endpoint serving many clients no longer grows its set of secrets (and the scan rebuilt over it
for each new value) without bound. Its own secrets, from its environment and config, stay masked."""

from __future__ import annotations

from collections import OrderedDict

import pytest

import core.redact as redact_module
from core.credentials import accept_credentials
from core.redact import FORWARDED_SECRETS_KEPT, MASK, redact, register_secret

NAME = "FORWARDED_TEST_API_KEY"


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's own registry of values (the process's is put back after it)."""
    monkeypatch.setattr(redact_module, "_forwarded_order", OrderedDict())
    monkeypatch.setattr(redact_module, "_forwarded_secrets", frozenset())
    monkeypatch.setattr(redact_module, "_extra_secrets", set())
    monkeypatch.delenv(NAME, raising=False)


def forward(value: str) -> None:
    """What the worker does with a job whose client forwarded ``value``."""
    accepted = accept_credentials({NAME: value}, {NAME})
    assert accepted.values == {NAME: value}


def masked(value: str) -> bool:
    return redact(f"upstream said {value} was wrong") == f"upstream said {MASK} was wrong"


def test_a_worker_keeps_the_most_recent_forwarded_keys_and_all_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_OWN_API_KEY", "worker-own-env-key-0001")
    register_secret("worker-config-literal-0002")  # a key written in the worker's config
    forward("worker-config-literal-0002")  # a client that sends the same value changes nothing for it
    forwarded = [f"client-key-{n:05d}-q8w7e6" for n in range(FORWARDED_SECRETS_KEPT + 50)]
    for value in forwarded:
        forward(value)

    scan = redact_module._current_patterns()
    assert sum(value in scan.forms for value in forwarded) == FORWARDED_SECRETS_KEPT  # bounded
    assert all(masked(value) for value in forwarded[-FORWARDED_SECRETS_KEPT:])  # the newest still masked
    assert not masked(forwarded[0])  # the oldest let go
    assert masked("worker-own-env-key-0001") and masked("worker-config-literal-0002")


def test_a_forwarded_key_used_again_is_the_most_recent_and_the_scan_is_not_rebuilt() -> None:
    first = "client-key-first-z9x8c7"
    forward(first)
    scan = redact_module._current_patterns()
    forward(first)  # the same client's next job
    assert redact_module._current_patterns() is scan
    for n in range(FORWARDED_SECRETS_KEPT - 1):
        forward(f"client-key-{n:05d}-q8w7e6")
    forward(first)
    forward("client-key-one-more-v5b4n3")
    assert masked(first)  # refreshed before the one that would have pushed it out
    assert not masked("client-key-00000-q8w7e6")


def test_a_forwarded_key_registered_again_as_the_workers_own_stays_bounded() -> None:
    """A job whose client forwarded a search key loads its config with it and builds a backend
    with it (both register the value): it stays among the forwarded ones, never kept for good."""
    forward("client-search-key-m1n2b3")
    register_secret("client-search-key-m1n2b3")
    assert masked("client-search-key-m1n2b3")
    for n in range(FORWARDED_SECRETS_KEPT):
        forward(f"client-key-{n:05d}-q8w7e6")
    assert not masked("client-search-key-m1n2b3")
    assert redact_module._extra_secrets == set()
