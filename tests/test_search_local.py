"""Local FTS5 index: build, incremental update, query, sanitizing, reading by URI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import InputError, ProviderUnavailable
from providers.search.local_index import LocalIndexSearch, build_index, fts_query


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    _write(root / "checkpoints.md", "# LangGraph checkpoints\n\nA checkpointer saves graph state after every step.\n")
    _write(root / "notes.txt", "RunPod serverless jobs move from IN_QUEUE to IN_PROGRESS to COMPLETED.\n")
    _write(
        root / "sub" / "page.html",
        "<html><head><title>MCP overview</title><style>.x{color:red}</style></head>"
        "<body><h1>Model Context Protocol</h1><p>Tools &amp; resources over stdio.</p>"
        "<script>alert('tracking')</script></body></html>",
    )
    _write(root / "image.png", "not text")
    _write(root / ".hidden" / "secret.md", "# hidden\nnever indexed")
    return root


def test_build_indexes_supported_files_only(corpus, tmp_path):
    stats = build_index([corpus], tmp_path / "idx.sqlite")
    assert (stats.added, stats.total, stats.removed) == (3, 3, 0)


def test_incremental_adds_updates_removes(corpus, tmp_path):
    index = tmp_path / "idx.sqlite"
    build_index([corpus], index)
    assert build_index([corpus], index).unchanged == 3
    _write(corpus / "checkpoints.md", "# LangGraph checkpoints\n\nNow about durability=sync too.\n")
    os.utime(corpus / "checkpoints.md", ns=(1, 1))
    (corpus / "notes.txt").unlink()
    _write(corpus / "new.md", "# New\nfresh document")
    stats = build_index([corpus], index)
    assert (stats.added, stats.updated, stats.removed, stats.unchanged, stats.total) == (1, 1, 1, 1, 3)


def test_touch_without_change_is_not_an_update(corpus, tmp_path):
    index = tmp_path / "idx.sqlite"
    build_index([corpus], index)
    os.utime(corpus / "notes.txt", ns=(5, 5))
    stats = build_index([corpus], index)
    assert (stats.updated, stats.unchanged) == (0, 3)


def test_missing_path_is_a_clear_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist") as info:
        build_index([tmp_path / "nope"], tmp_path / "idx.sqlite")
    assert info.value.field == "path"


async def test_search_ranks_titles_and_snippets(corpus, tmp_path):
    backend = LocalIndexSearch([corpus], tmp_path / "idx.sqlite")
    results = await backend.search("How do LangGraph checkpoints work?", max_results=5)
    assert results[0].title == "LangGraph checkpoints"
    assert results[0].url == (corpus / "checkpoints.md").resolve().as_uri()
    assert "checkpointer saves graph state" in results[0].snippet
    html_hits = await backend.search("stdio resources")
    assert html_hits[0].title == "MCP overview"
    assert "alert" not in html_hits[0].snippet and "color" not in html_hits[0].snippet


async def test_search_autobuilds_and_notices_new_files(corpus, tmp_path):
    index = tmp_path / "deep" / "idx.sqlite"
    backend = LocalIndexSearch([corpus], index, refresh_interval_s=0)
    assert not index.exists()
    assert await backend.search("zebra") == []
    assert index.exists()
    _write(corpus / "zebra.md", "# Zebras\nstripes")
    assert [r.title for r in await backend.search("zebra")] == ["Zebras"]


@pytest.mark.parametrize(
    "query", ['"unbalanced', "NEAR(a b)", "title:secret", "a AND OR NOT", "*", "(((", "col:^x", "-x +y", "' OR 1=1 --"]
)
async def test_fts_syntax_in_user_text_never_errors(corpus, tmp_path, query):
    backend = LocalIndexSearch([corpus], tmp_path / "idx.sqlite")
    assert isinstance(await backend.search(query), list)


def test_fts_query_quotes_every_term():
    assert fts_query('what is "MCP" NEAR(stdio)?') == '"mcp" OR "near" OR "stdio"'
    assert fts_query("!!!") == ""


async def test_read_document_only_reads_indexed_files(corpus, tmp_path):
    backend = LocalIndexSearch([corpus], tmp_path / "idx.sqlite")
    await backend.search("checkpoints")
    title, text = await backend.read_document((corpus / "checkpoints.md").resolve().as_uri())
    assert title == "LangGraph checkpoints" and "saves graph state" in text
    assert await backend.read_document("file:///etc/passwd") is None
    assert await backend.read_document("https://example.org/") is None


async def test_no_corpus_and_no_index_is_unavailable(tmp_path):
    backend = LocalIndexSearch([tmp_path / "missing"], tmp_path / "idx.sqlite")
    assert "does not exist" in backend.unconfigured_reason() or "none of the paths" in backend.unconfigured_reason()
    with pytest.raises(ProviderUnavailable, match="paths"):
        await backend.search("x")


def test_from_config_resolves_relative_paths_against_project_root(tmp_path):
    from core.config import PROJECT_ROOT

    backend = LocalIndexSearch.from_config("local", {"paths": ["docs/corpus"], "index_path": str(tmp_path / "i.sqlite")})
    assert backend.paths == [(PROJECT_ROOT / "docs" / "corpus").resolve()]


async def test_index_kept_from_other_roots_survives_a_config_sync(corpus, tmp_path):
    other = _write(tmp_path / "other" / "extra.md", "# Extra\nkiwi fruit").parent
    index = tmp_path / "idx.sqlite"
    build_index([other], index)
    backend = LocalIndexSearch([corpus], index)
    assert [r.title for r in await backend.search("kiwi")] == ["Extra"]
    assert await backend.search("checkpointer")


def test_build_from_config_uses_the_configured_index_path(corpus, tmp_path):
    from core.config import DEFAULT_CONFIG_PATH, load_config
    from providers.search.local_index import build_index_from_config

    config = load_config(DEFAULT_CONFIG_PATH, env={"SWARM_HOME": str(tmp_path / "home")})
    stats = build_index_from_config(config, [corpus])
    assert stats.index_path == str(tmp_path / "home" / "index.sqlite") and stats.added == 3
    with pytest.raises(InputError, match="does not exist"):
        build_index_from_config(config, [tmp_path / "missing"])
    # with no paths: the folders of yours indexed before, not the project's example corpus
    default = build_index_from_config(config)
    assert (default.added, default.unchanged, default.dropped_roots) == (0, 3, [])


async def test_an_index_of_the_older_layout_is_rebuilt_not_misread(corpus, tmp_path):
    import sqlite3

    index = tmp_path / "idx.sqlite"
    old = sqlite3.connect(index)
    old.executescript(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE docs(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, mtime_ns INTEGER NOT NULL,"
        " size INTEGER NOT NULL, sha256 TEXT NOT NULL, title TEXT NOT NULL);"
        "CREATE VIRTUAL TABLE docs_fts USING fts5(title, body, tokenize='porter unicode61');"
        "INSERT INTO docs VALUES (1, '/gone.md', 1, 1, 'x', 'Stale');"
        "INSERT INTO docs_fts(rowid, title, body) VALUES (1, 'Stale', 'checkpointer of a file that is gone');"
    )
    old.close()
    backend = LocalIndexSearch([corpus], index)
    assert await backend.read_document("file:///gone.md") is None  # not misread before the upgrade
    titles = [r.title for r in await backend.search("checkpointer")]
    assert titles == ["LangGraph checkpoints"]
    assert build_index([corpus], index).unchanged == 3


def test_a_snippet_drops_its_heading_lines_so_no_title_runs_into_a_sentence() -> None:
    from providers.search.index_query import snippet_text as _snippet_text

    assert _snippet_text("…the end.\n\n## Progress and long jobs\nTools report progress. …") == (
        "…the end. Tools report progress. …"
    )
    assert _snippet_text("## Only a heading") == "Only a heading"  # nothing else: the heading stays
    assert _snippet_text("a # mark mid-line") == "a mark mid-line"


async def test_a_copy_of_a_document_in_another_root_is_found_once_ours_first(tmp_path: Path) -> None:
    """Every clone of the project shares the index in $SWARM_HOME and each adds its docs/corpus:
    a report cited the same text twice, once per clone. A search returns each content once, the
    copy under the asking config's own paths."""
    other, ours = tmp_path / "old-clone" / "corpus", tmp_path / "new-clone" / "corpus"
    for root in (other, ours):
        root.mkdir(parents=True)
        (root / "breakers.md").write_text("# Circuit breakers\n\nA breaker opens after failures in a row.\n")
    (ours / "chains.md").write_text("# Fallback chains\n\nEach failure moves to the next model.\n")
    index = tmp_path / "index.sqlite"
    await LocalIndexSearch([other], index).search("breaker")  # the old clone indexed first
    found = await LocalIndexSearch([ours], index).search("breaker failures", max_results=5)
    assert [Path(r.url.removeprefix("file://")) for r in found] == [ours / "breakers.md", ours / "chains.md"]


async def test_many_copies_still_leave_as_many_documents_as_asked(tmp_path: Path) -> None:
    """Three clones' copies of every file rank alike: the search still returns ``max_results``
    different documents, not a third of them."""
    roots = [tmp_path / f"clone-{n}" / "corpus" for n in range(3)]
    for root in roots:
        root.mkdir(parents=True)
        for k in range(6):
            (root / f"doc{k}.md").write_text(f"# Doc {k}\n\nA breaker note number {k}.\n")
    index = tmp_path / "index.sqlite"
    for root in roots[:2]:
        await LocalIndexSearch([root], index).search("breaker")
    found = await LocalIndexSearch([roots[2]], index).search("breaker note", max_results=5)
    assert len(found) == 5 and all(str(roots[2]) in r.url for r in found)


async def test_another_clones_edit_of_a_document_we_hold_is_left_out(tmp_path: Path) -> None:
    """Two clones of different versions hold docs/corpus/breakers.md with other text: a report
    cited the old and the new page as two sources. Ours is found; theirs only where we have no
    such file (a page only they have is still a source)."""
    other, ours = tmp_path / "old-clone" / "docs" / "corpus", tmp_path / "new-clone" / "docs" / "corpus"
    _write(other / "breakers.md", "# Circuit breakers\n\nA breaker opens after three failures.\n")
    _write(other / "retired.md", "# Retired notes\n\nA breaker used to open after ten failures.\n")
    _write(ours / "breakers.md", "# Circuit breakers\n\nA breaker opens after five failures in a row.\n")
    index = tmp_path / "index.sqlite"
    await LocalIndexSearch([other], index).search("breaker")
    found = await LocalIndexSearch([ours], index).search("breaker failures", max_results=5)
    assert sorted(Path(r.url.removeprefix("file://")) for r in found) == sorted([ours / "breakers.md", other / "retired.md"])
    # the other clone still finds its own text: nothing was removed from the shared index
    theirs = await LocalIndexSearch([other], index).search("breaker failures", max_results=5)
    assert {Path(r.url.removeprefix("file://")) for r in theirs} == {other / "breakers.md", other / "retired.md"}


async def test_a_root_that_is_gone_leaves_the_index_with_its_documents(tmp_path: Path) -> None:
    """A deleted clone's docs/corpus stayed in the shared index for ever, found and cited as
    links that open nothing. The next sync drops the root and its documents."""
    import shutil

    from providers.search.index_store import describe

    gone, ours = tmp_path / "deleted-clone" / "corpus", tmp_path / "clone" / "corpus"
    _write(gone / "kiwi.md", "# Kiwi\n\nA kiwi note.\n")
    _write(ours / "apple.md", "# Apple\n\nAn apple note.\n")
    index = tmp_path / "index.sqlite"
    await LocalIndexSearch([gone], index).search("kiwi")
    assert [r.title for r in await LocalIndexSearch([ours], index).search("kiwi")] == ["Kiwi"]
    shutil.rmtree(gone.parent)
    assert await LocalIndexSearch([ours], index).search("kiwi") == []
    stats = describe(index)
    assert stats["roots"] == [str(ours.resolve())] and stats["documents"] == 1


async def test_a_recorded_root_that_cannot_be_looked_at_is_kept_and_breaks_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recorded root behind a folder this user may not enter raised PermissionError from
    Path.exists(), and every search failed; it is left out of the sync, its documents kept."""
    import sqlite3

    from providers.search.index_store import recorded_roots

    ours, shut = tmp_path / "clone" / "corpus", tmp_path / "locked" / "corpus"
    _write(ours / "apple.md", "# Apple\n\nAn apple note.\n")
    _write(shut / "kiwi.md", "# Kiwi\n\nA kiwi note.\n")
    index = tmp_path / "index.sqlite"
    await LocalIndexSearch([shut], index).search("kiwi")
    real_stat, locked = Path.stat, shut.resolve()

    def stat(self: Path, *args: object, **kwargs: object) -> os.stat_result:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", stat)
    assert sorted(r.title for r in await LocalIndexSearch([ours], index).search("apple kiwi")) == ["Apple", "Kiwi"]
    build_index([ours], index)
    conn = sqlite3.connect(index)
    assert str(locked) in recorded_roots(conn)  # not known to be gone: kept, with its documents
    conn.close()
