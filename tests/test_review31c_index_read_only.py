"""An index in a folder this process cannot write (a read-only mount, another user's folder, a
shared copy: chmod 555 folder, 444 files). Every search failed with "index at ... is unusable:
attempt to write a readonly database": the sync opened it with ``connect`` (WAL mode, the schema
check) to read its roots, and even a ``mode=ro`` read of a WAL index needs its ``-shm`` file made
beside it. A search answers from the index as it stands, and says once that it cannot update it.

Root writes where the mode bits say not: as root the search runs in a user namespace of its own
(``unshare --user``), where root's power over the files is gone, as for any other user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_research_cjk import _old_index
from test_search_local import _write

from providers.search.local_index import build_index

ROOT = Path(__file__).resolve().parents[1]
#: two searches (the second a re-sync: ``refresh_interval_s`` 0), a document read by its URI, and
#: what ``swarm index stats`` shows, by a process that cannot write the index's folder
_SEARCH = """
import asyncio, json, logging, sys
from pathlib import Path
from core.errors import ProviderError
from providers.search.index_schema import describe
from providers.search.local_index import LocalIndexSearch
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
docs, index = Path(sys.argv[1]), Path(sys.argv[2])
async def main():
    search = LocalIndexSearch([docs], index, refresh_interval_s=0)
    try:
        found = [[r.url for r in await search.search("falcon logs", 3)] for _ in range(2)]
    except ProviderError as exc:
        return {"error": str(exc)}
    read = await search.read_document((docs / "falcon.md").as_uri())
    return {"found": found, "read": read and read[1], "documents": describe(index)["documents"]}
print(json.dumps(asyncio.run(main())))
"""


def _without_write_access(docs: Path, index: Path) -> dict[str, object]:
    """``_SEARCH`` run where ``index``'s folder and files are read-only (555, 444) to it: its
    output, and its log lines as ``log``."""
    command = [sys.executable, "-c", _SEARCH, str(docs), str(index)]
    if os.geteuid() == 0:
        if not shutil.which("unshare") or subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode:
            pytest.skip("runs as root, which writes a read-only folder, and no user namespace (unshare --user) takes that away")
        command = ["unshare", "--user", *command]
    folder = index.parent
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        folder.chmod(0o755)
        for path in folder.iterdir():
            path.chmod(0o644)
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout.splitlines()[-1]), "log": done.stderr}


def test_a_read_only_index_answers_as_it_stands_and_says_so_once(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    note = _write(docs / "falcon.md", "# Falcon\n\nThe falcon agent keeps its logs for seven days.\n")
    index = tmp_path / "shared" / "index.sqlite"
    build_index([docs], index)
    result = _without_write_access(docs.resolve(), index)
    assert "error" not in result, result
    assert result["found"] == [[note.resolve().as_uri()]] * 2, result
    assert result["read"] == note.read_text(encoding="utf-8") and result["documents"] == 1, result
    warnings = [line for line in str(result["log"]).splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "cannot update" in warnings[0] and "read-only" in warnings[0], result["log"]


def test_a_read_only_index_of_an_older_layout_says_what_to_do(tmp_path: Path) -> None:
    """It cannot be upgraded (that empties it) nor searched (its columns are not the query's)."""
    docs = tmp_path / "docs"
    note = _write(docs / "falcon.md", "# Falcon\n\nThe falcon agent keeps its logs for seven days.\n")
    index = tmp_path / "shared" / "index.sqlite"
    index.parent.mkdir()
    _old_index(index, note.resolve())
    result = _without_write_access(docs.resolve(), index)
    assert "older layout" in str(result.get("error")) and "writable" in str(result["error"]), result
