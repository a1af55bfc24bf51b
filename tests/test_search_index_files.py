"""What ``swarm index build`` reads and says: the plain-text markups (reST, AsciiDoc, Org) are
indexed, a file of a type it does not read is named, the files a build added, updated and
removed are named, and the project's example corpus stays out of an index of one's own."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT
from providers.search.index_store import build_index, describe
from providers.search.local_index import LocalIndexSearch
from swarm import cli

SHIPPED = (PROJECT_ROOT / "docs" / "corpus").resolve()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _build(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert cli.main(["index", "build", "-q", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def default_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped config as a user has it: ``SWARM_CORPUS`` unset, so its paths are docs/corpus."""
    monkeypatch.delenv("SWARM_CORPUS", raising=False)


@pytest.fixture
def own(tmp_path: Path) -> Path:
    root = tmp_path / "mydocs"
    _write(root / "uploads.md", "# Upload retries\n\nA failed upload is retried three times with a pelican backoff.\n")
    _write(root / "spool.txt", "The spooler keeps every serverless event in a segment file.\n")
    return root


def test_restructuredtext_asciidoc_and_org_files_are_indexed_with_their_titles(tmp_path, capsys):
    """A folder of .rst files said "0 documents (0 added, ...)", exit 0, nothing skipped."""
    root = tmp_path / "markup"
    _write(root / "architecture.rst", "=====================\nFalconer Architecture\n=====================\n\n"
           ".. contents:: Table of Contents\n\nOverview\n========\n\nThe spooler writes a segment of 64 MiB.\n")
    _write(root / "old.rest", "Batcher\n=======\n\nThe batcher compresses with zstd.\n")
    _write(root / "guide.adoc", ":toc:\n= Operator Guide\n\n== Install\n\nRun the heron installer.\n")
    _write(root / "more.asciidoc", "Kestrel notes\n\nKestrels hover.\n")
    _write(root / "plan.org", "#+TITLE: Quarterly Plan\n* Goals\nShip the osprey release.\n")
    stats = _build(capsys, str(root))
    assert (stats["added"], stats["skipped"], stats["problems"]) == (5, 0, []), stats
    info = describe(tmp_path / "swarm-home" / "index.sqlite")
    assert info["by_kind"] == {"asciidoc": {"documents": 2, "pages": 0}, "org": {"documents": 1, "pages": 0},
                               "restructuredtext": {"documents": 2, "pages": 0}}
    backend = LocalIndexSearch([root], tmp_path / "swarm-home" / "index.sqlite")
    titles = {word: [(r.title, r.url.rsplit("/", 1)[-1]) for r in _search(backend, word)]
              for word in ("spooler", "zstd", "heron", "kestrels", "osprey")}
    assert titles == {"spooler": [("Falconer Architecture", "architecture.rst")], "zstd": [("Batcher", "old.rest")],
                      "heron": [("Operator Guide", "guide.adoc")], "kestrels": [("Kestrel notes", "more.asciidoc")],
                      "osprey": [("Quarterly Plan", "plan.org")]}


def _search(backend: LocalIndexSearch, query: str) -> list:
    import asyncio

    return asyncio.run(backend.search(query))


def test_a_file_of_a_type_the_index_does_not_read_is_named_not_passed_over(tmp_path, capsys):
    """An unknown type was passed over without a word (a .doc was named, a .png or .xyz not)."""
    root = tmp_path / "mixed"
    _write(root / "note.md", "# Note\n\nSome text.\n")
    (root / "diagram.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    _write(root / "data.xyz", "whatever")
    _write(root / "README", "no suffix")
    (root / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0 legacy")
    stats = _build(capsys, str(root))
    by_name = {Path(p["path"]).name: p for p in stats["problems"]}
    assert (stats["added"], stats["skipped"]) == (1, 4) and set(by_name) == {"diagram.png", "data.xyz", "README", "old.doc"}
    assert by_name["diagram.png"]["reason"] == ".png files are not read (not a document format the index knows)"
    assert by_name["README"]["reason"].startswith("a file without a suffix is not read")
    assert by_name["old.doc"]["kind"] == "unreadable" and "save it as .docx" in by_name["old.doc"]["reason"]
    assert {p["kind"] for n, p in by_name.items() if n != "old.doc"} == {"not_read"}

    assert cli.main(["index", "build", "-q", str(root)]) == 0  # again: known, still counted and said
    out = capsys.readouterr().out
    assert "skipped, of a type the index does not read: 3 file(s)" in out, out
    assert f"  {(root / 'data.xyz').resolve()}: .xyz files are not read" in out
    assert "not indexed: 1 file(s)" in out and "old.doc: the legacy Word format" in out
    assert cli.main(["index", "stats"]) == 0
    assert "diagram.png: .png files are not read" in capsys.readouterr().out
    (root / "diagram.png").unlink()
    again = _build(capsys, str(root))
    assert again["skipped"] == 3 and "diagram.png" not in json.dumps(again)


def test_build_names_the_files_it_added_updated_and_removed(tmp_path, capsys):
    """After a rename, a deletion and an edit, the build printed only counts."""
    root = tmp_path / "notes"
    for n in range(14):
        _write(root / f"n{n:02}.md", f"# Note {n}\n\nText {n}.\n")
    first = _build(capsys, str(root))
    assert first["added_paths"] == [str((root / f"n{n:02}.md").resolve()) for n in range(14)]
    assert cli.main(["index", "build", "-q", "--reset", str(root)]) == 0
    out = capsys.readouterr().out
    assert "added:\n" + "".join(f"  {(root / f'n{n:02}.md').resolve()}\n" for n in range(10)) in out
    assert "  … and 4 more (--json lists them all)" in out

    (root / "n00.md").rename(root / "renamed.md")
    (root / "n01.md").unlink()
    _write(root / "n02.md", "# Note 2\n\nEdited text.\n")
    os.utime(root / "n02.md", ns=(1, 1))
    stats = _build(capsys, str(root))
    name = {str(p.resolve()): p.name for p in [root / "renamed.md", root / "n00.md", root / "n01.md", root / "n02.md"]}
    assert [name[p] for p in stats["added_paths"]] == ["renamed.md"]
    assert [name[p] for p in stats["updated_paths"]] == ["n02.md"]
    assert sorted(name[p] for p in stats["removed_paths"]) == ["n00.md", "n01.md"]
    os.utime(root / "n03.md", ns=(2, 2))
    _write(root / "n03.md", "# Note 3\n\nEdited.\n")
    assert cli.main(["index", "build", "-q", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"updated:\n  {(root / 'n03.md').resolve()}\n" in out and "added:" not in out and "removed:" not in out


def _roots(index: Path) -> list[str]:
    return describe(index)["roots"]


def test_research_leaves_the_example_corpus_out_of_an_index_of_your_own(own, tmp_path):
    """After ``swarm index build /my/docs`` the research sync added the project's notes (the
    paths' default) and cited them for the user's questions."""
    index = tmp_path / "swarm-home" / "index.sqlite"
    build_index([own], index)
    backend = LocalIndexSearch.from_config("local", {"index_path": str(index)})
    hits = _search(backend, "RunPod serverless checkpoint MCP upload")
    assert hits and {Path(h.url.removeprefix("file://")).parent for h in hits} == {own.resolve()}
    assert _roots(index) == [str(own.resolve())]


def test_the_example_corpus_stands_in_until_you_index_your_own_then_leaves(own, tmp_path, capsys):
    index = tmp_path / "swarm-home" / "index.sqlite"
    backend = LocalIndexSearch.from_config("local", {"index_path": str(index)})
    assert _search(backend, "RunPod serverless")  # a first run with no index: the project's notes
    assert describe(index)["fallback_roots"] == _roots(index) == [str(SHIPPED)]
    assert cli.main(["index", "stats"]) == 0
    assert f"roots: {SHIPPED} (the example corpus, until you index your own)" in capsys.readouterr().out

    assert cli.main(["index", "build", "-q", str(own)]) == 0
    out = capsys.readouterr().out
    assert f"left the index: {SHIPPED} (the project's example corpus" in out, out
    assert "1 documents" not in out and "2 documents (2 added" in out
    assert _roots(index) == [str(own.resolve())]
    later = LocalIndexSearch.from_config("local", {"index_path": str(index)})
    assert {Path(h.url.removeprefix("file://")).parent for h in _search(later, "serverless RunPod")} == {own.resolve()}
    # ``swarm index build`` with no paths now updates your folders, not the example
    stats = _build(capsys)
    assert (stats["unchanged"], stats["added"], stats["dropped_roots"]) == (2, 0, []) and _roots(index) == [str(own.resolve())]


def test_an_older_index_holding_the_example_beside_your_own_drops_it_at_your_next_build(own, tmp_path, capsys):
    """An index made before the stand-in was recorded: its roots were ``/my/docs, docs/corpus``."""
    index = tmp_path / "swarm-home" / "index.sqlite"
    build_index([own, SHIPPED], index)
    conn = sqlite3.connect(index)
    with conn:
        conn.execute("DELETE FROM meta WHERE key='fallback_roots'")
    conn.close()
    stats = _build(capsys, str(own))
    assert stats["dropped_roots"] == [str(SHIPPED)] and stats["total"] == 2
    assert all(Path(p).parent == SHIPPED for p in stats["removed_paths"]) and stats["removed"] >= 5
    assert _roots(index) == [str(own.resolve())]


def test_a_fresh_build_without_paths_indexes_the_example_as_a_stand_in(tmp_path, capsys):
    stats = _build(capsys)
    assert stats["added"] >= 5 and describe(tmp_path / "swarm-home" / "index.sqlite")["fallback_roots"] == [str(SHIPPED)]


def test_the_example_corpus_named_by_you_or_configured_is_kept(own, tmp_path, capsys):
    """What the user names is theirs: the example corpus given to ``swarm index build``, or any
    configured paths, stay and are synced with the folders indexed before."""
    index = tmp_path / "swarm-home" / "index.sqlite"
    _build(capsys, str(SHIPPED))
    stats = _build(capsys, str(own))
    assert stats["dropped_roots"] == [] and _roots(index) == [str(SHIPPED), str(own.resolve())]

    other = _write(tmp_path / "other" / "kiwi.md", "# Kiwi\n\nA kiwi note.\n").parent
    configured = LocalIndexSearch.from_config("local", {"index_path": str(index), "paths": [str(other)]})
    assert [h.title for h in _search(configured, "kiwi")] == ["Kiwi"]
    assert _roots(index) == [str(SHIPPED), str(own.resolve()), str(other.resolve())]
    both = LocalIndexSearch.from_config("local", {"index_path": str(tmp_path / "b.sqlite"), "paths": ["docs/corpus", str(own)]})
    assert _search(both, "pelican") and _roots(tmp_path / "b.sqlite") == [str(SHIPPED), str(own.resolve())]
    assert describe(tmp_path / "b.sqlite")["fallback_roots"] == []


def test_index_stats_sums_the_files_it_does_not_read_by_type(tmp_path, capsys, monkeypatch) -> None:
    """A folder of 1 README and 1,500 .py files: `swarm index stats` printed 1,500 lines."""
    from swarm.cli import main

    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text("# Repo\n\nThe repo holds tools.\n")
    for n in range(30):
        (folder / f"tool{n}.py").write_text("print(1)\n")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    assert main(["index", "build", str(folder), "-q"]) == 0
    capsys.readouterr()
    assert main(["index", "stats"]) == 0
    out = capsys.readouterr().out
    assert "skipped, of a type the index does not read: 31 file(s) (.py: 30, .png: 1); --json lists them" in out, out
    assert "tool7.py" not in out
