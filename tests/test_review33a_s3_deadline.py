"""One S3 call is bounded by ONE deadline, ``timeout_s``, its retries included.

An S3 endpoint that accepts TCP and never answers held a write 3-4 x ``timeout_s`` (botocore's three
attempts, each waiting ``timeout_s``, each PUT after a 1 s wait for ``100 Continue``) before the
storage chain's local fallback took it: about 90-120 s at the shipped 30 s. A refused connection,
a missing bucket and a bad key stay as fast as they were, and every error says its attempts and
the time they took, never a key or a signature.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MOTO_SECRET
from fake_openai import RefusedPort
from hostile_http import Act, HostileServer

from core.errors import InputError, ProviderTimeout, ProviderUnavailable
from providers.base import TraceStep, listen_to_storage
from providers.storage.chain import StorageChain
from providers.storage.local import LocalStorage
from providers.storage.s3 import S3Storage

TIMEOUT_S = 2.0


class SilentServer:
    """A loopback port that accepts every connection and never sends a byte (a hung S3)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.accepted: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def _chain(url: str, tmp_path: Path) -> tuple[StorageChain, LocalStorage]:
    local = LocalStorage(tmp_path / "artifacts")
    return StorageChain([("s3", S3Storage("art", endpoint_url=url, timeout_s=TIMEOUT_S)), ("local", local)]), local


async def test_a_write_to_a_hung_s3_falls_over_to_local_within_its_timeout(
        silent: SilentServer, tmp_path: Path, aws_env: None) -> None:
    chain, local = _chain(silent.url, tmp_path)
    steps: list[TraceStep] = []
    started = time.perf_counter()
    with listen_to_storage(steps.append):
        await chain.put("image_tools/j1/upscale.png", b"\x89PNG result")
    took = time.perf_counter() - started
    assert await local.get("image_tools/j1/upscale.png") == b"\x89PNG result"
    # was 9.3 s at timeout_s 2 (3 attempts x (1 s + 2 s)): about 90 s at the shipped 30 s
    assert TIMEOUT_S * 0.9 <= took < 2 * TIMEOUT_S, took
    failed = steps[0]
    assert (failed.provider, failed.outcome, failed.error_class) == ("s3", "error", "ProviderTimeout")
    detail = failed.detail or ""
    assert "not done within timeout_s 2 s (1 attempt in 2.0 s; no answer)" in detail, detail
    assert MOTO_SECRET not in detail and "X-Amz-Signature" not in detail


async def test_a_read_whose_retry_hangs_is_answered_at_the_deadline_saying_each_attempt(
        tmp_path: Path, aws_env: None) -> None:
    """The first attempt fails at once (500), the retry hangs: the deadline covers the retry too."""
    error = "<Error><Code>InternalError</Code><Message>planted</Message></Error>"
    with HostileServer(Act.status(500, error, content_type="application/xml"), Act.slow(30)) as hostile:
        store = S3Storage("art", endpoint_url=hostile.url, timeout_s=TIMEOUT_S)
        started = time.perf_counter()
        with pytest.raises(ProviderTimeout) as timed_out:
            await store.get("a.txt")
        took = time.perf_counter() - started
    said = str(timed_out.value)
    assert took < 1.75 * TIMEOUT_S, took  # was 4.1 s: the two hung retries waited 2 s each
    assert "(2 attempts in 2.0 s; the last failure: HTTP 500 InternalError)" in said, said
    assert MOTO_SECRET not in said


async def test_what_fails_at_once_still_fails_at_once_and_says_its_attempts(
        tmp_path: Path, moto_url: str, aws_env: None) -> None:
    with RefusedPort() as refused:
        chain, local = _chain(refused.url, tmp_path)
        steps: list[TraceStep] = []
        started = time.perf_counter()
        with listen_to_storage(steps.append):
            await chain.put("a/refused.txt", b"x")
        took = time.perf_counter() - started
    assert took < 1.5, took  # botocore's three attempts, with their short backoff
    assert await local.get("a/refused.txt") == b"x"
    assert steps[0].error_class == "ProviderUnavailable"
    assert re.search(rf"cannot reach {refused.url} \(3 attempts in \d+\.\d s\)", steps[0].detail or ""), steps[0].detail

    missing = S3Storage("no-such-bucket", endpoint_url=moto_url, timeout_s=TIMEOUT_S)
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailable, match="bucket 'no-such-bucket' does not exist"):
        await missing.put("a.txt", b"x")
    with pytest.raises(InputError):
        await missing.put("../outside.txt", b"x")  # refused before any request
    assert time.perf_counter() - started < 1.5
