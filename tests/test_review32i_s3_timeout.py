"""An S3 call that times out says what it tried and how long it waited (``timeout_s`` is the whole
budget of the call since the thirty-third session: test_review33a_s3_deadline).

``ProviderTimeout: timed out after 3 s`` was said of a write that took 12 s (botocore's
``max_attempts: 2`` are retries: 3 requests of 3 s, each PUT after a 1 s wait for ``100 Continue``);
the fallback's trace step showed the 12 s beside it.
"""

from __future__ import annotations

import time

import pytest
from hostile_http import Act, HostileServer

from core.errors import ProviderTimeout


async def test_a_timeout_says_its_attempts_and_the_time_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.storage.s3 import S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-planted-review32i-0001")
    with HostileServer(Act.slow(30)) as hostile:
        store = S3Storage("bucket", endpoint_url=hostile.url, timeout_s=0.5)
        started = time.perf_counter()
        with pytest.raises(ProviderTimeout) as timed_out:
            await store.get("a.txt")
        took = time.perf_counter() - started
    said = str(timed_out.value)
    assert "not done within timeout_s 0.5 s (1 attempt in 0.5 s; no answer)" in said, said
    assert 0.5 <= took < 1.5  # what it says is what happened
    assert "aws-secret-planted" not in said
