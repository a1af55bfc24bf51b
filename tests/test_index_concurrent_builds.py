"""Two processes building one index at once (two `swarm index build`, or two MCP servers syncing
at their first research) each read the document list, then both inserted the same new files:
one crashed with ``UNIQUE constraint failed: docs.path``. Builds of one index take turns now."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = "import sys; from providers.search.index_store import build_index; build_index([sys.argv[1]], sys.argv[2])"


def test_two_processes_building_one_new_index_both_finish_and_every_document_is_searchable(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(150):
        (docs / f"note{i:03}.md").write_text(f"# Note {i}\n\nThe falcon number {i} flies over the hangar.\n")
    for trial in range(3):
        index = tmp_path / f"index{trial}.sqlite"
        builds = [subprocess.Popen([sys.executable, "-c", BUILD, str(docs), str(index)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for build in builds:
            _, err = build.communicate(timeout=120)
            assert build.returncode == 0, err[-2000:]
        with sqlite3.connect(index) as conn:
            assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 150
            assert conn.execute("SELECT count(*) FROM docs_fts WHERE docs_fts MATCH 'falcon'").fetchone()[0] == 150
