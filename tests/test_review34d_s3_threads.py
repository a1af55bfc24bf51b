"""A hung S3 holds S3's own worker threads, never the ones the rest of the process shares.

S3's blocking calls ran on anyio's default thread limiter (40 threads for the whole process): with
an endpoint that accepts TCP and never answers, 45 writes held all 40 until their deadline, and an
unrelated ``anyio.to_thread.run_sync`` (a local write, an image check) waited out ``timeout_s``
behind them. A call answered at its deadline gave its thread back at once while the thread went on
waiting on the store, so the threads held by a hung S3 were not bounded either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import anyio
import pytest
from conftest import MOTO_SECRET
from test_review33a_s3_deadline import SilentServer  # a loopback port that accepts and never answers

from core.errors import ProviderError, ProviderTimeout
from providers.storage.s3 import S3Storage
from providers.storage.s3_calls import THREADS

TIMEOUT_S = 4.0
WRITES = 45


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


async def _until(done: Callable[[], bool], within_s: float = 10.0) -> None:
    with anyio.fail_after(within_s):
        while not done():
            await anyio.sleep(0.02)


async def test_45_writes_to_a_hung_s3_leave_the_process_threads_free(silent: SilentServer, aws_env: None) -> None:
    store = S3Storage("art", endpoint_url=silent.url, timeout_s=TIMEOUT_S)
    failed: list[ProviderError] = []

    async def write(i: int) -> None:
        try:
            await store.put(f"burst/{i}.bin", b"x")
        except ProviderError as exc:
            failed.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(WRITES):
            tg.start_soon(write, i)
        await _until(lambda: len(silent.accepted) >= THREADS)  # the writes are on the wire, hung
        started = time.perf_counter()
        assert await anyio.to_thread.run_sync(lambda: "unrelated") == "unrelated"
        took = time.perf_counter() - started
        # was answered only when the writes were given up at their deadline (about 3.5 s here)
        assert failed == [], "the unrelated call waited for the hung writes"
        assert took < TIMEOUT_S / 2, took

    assert len(failed) == WRITES and all(isinstance(exc, ProviderTimeout) for exc in failed)
    said = [str(exc) for exc in failed]
    no_thread = [text for text in said if f"all {THREADS} of S3's worker threads were held" in text]
    assert len(no_thread) == WRITES - THREADS, said
    assert "not started within timeout_s 4 s" in no_thread[0], no_thread[0]
    assert sum("(1 attempt in 4.0 s; no answer)" in text for text in said) == THREADS, said
    assert len(silent.accepted) <= THREADS  # was 40: a connection per default thread
    assert not any(MOTO_SECRET in text or "X-Amz-Signature" in text for text in said)


async def test_an_abandoned_call_holds_its_thread_until_it_returns_then_gives_it_back(
        silent: SilentServer, aws_env: None) -> None:
    """Answered at its deadline, a write's thread still waits on the store (its 1 s wait for ``100
    Continue``, then its read timeout): the call after it is told so, and the one after that, once
    those threads have returned, runs again."""
    store = S3Storage("art", endpoint_url=silent.url, timeout_s=TIMEOUT_S)
    async with anyio.create_task_group() as tg:
        for i in range(THREADS):
            tg.start_soon(_timed_out, store.put(f"held/{i}.bin", b"x"))

    impatient = S3Storage("art", endpoint_url=silent.url, timeout_s=0.3)
    said = await _timed_out(impatient.get("late.txt"))
    # was "(1 attempt in 0.3 s; no answer)": a fresh default thread, on top of the 16 still waiting
    assert f"all {THREADS} of S3's worker threads were held by calls that had not returned" in said, said
    assert f"{THREADS} of them past their deadline" in said, said

    connected = len(silent.accepted)
    said = await _timed_out(store.get("later.txt"))
    assert "(1 attempt in 4.0 s; no answer)" in said, said  # given a thread once they returned
    assert len(silent.accepted) == connected + 1


async def _timed_out(call: object) -> str:
    with pytest.raises(ProviderTimeout) as timed_out:
        await call  # type: ignore[misc]
    return str(timed_out.value)
