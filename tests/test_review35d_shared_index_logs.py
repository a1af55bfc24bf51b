"""The local search index serves every job: its sync, started by whichever job searches first
(and again once ``refresh_interval_s`` passed), is the server's own work. Its records ("local index
synced: ...") went to the MCP client of that job. Now they reach the operator's log only; what the
job itself logs still reaches its client, and a sync that fails still fails the job's search."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.errors import ProviderUnavailable
from mcp_server import client_log
from providers.search.local_index import LocalIndexSearch
from swarm.logs import bind_job, log_audience, unbind_job


class Recording:
    """A client's log as ``ClientLogHandler`` sees it: every level wanted, each record kept."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def wants(self, levelno: int) -> bool:
        return True

    def offer(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_the_index_sync_is_no_clients_and_the_jobs_own_records_still_are(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # the operator's level: what exists to be sent
    client_log.install()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "keys.md").write_text("# Keys\n\nKeys are rotated every ninety days by the platform team.\n")
    search = LocalIndexSearch([docs], tmp_path / "idx.sqlite")
    client = Recording()
    audience, job = log_audience.set(client), bind_job("job-35d")
    try:
        results = await search.search("keys rotated ninety days", 5)
        logging.getLogger("swarm.research").info("searched: %d results", len(results))
        with pytest.raises(ProviderUnavailable):  # a sync that fails is still the search's error
            await LocalIndexSearch([tmp_path / "gone"], tmp_path / "other.sqlite").search("keys", 5)
    finally:
        unbind_job(job)
        log_audience.reset(audience)
    assert results, "the index found nothing"
    assert any("local index synced" in r.getMessage() for r in caplog.records)  # the operator's log has it
    assert not [m for m in client.messages if "local index" in m], client.messages
    assert client.messages == [f"searched: {len(results)} results"], client.messages
