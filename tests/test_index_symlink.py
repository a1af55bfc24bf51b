"""A document reachable under its own name and through a symbolic link to it is one document:
a search names the real file, never the link, whichever the index read first."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.search.local_index import LocalIndexSearch

TEXT = "# Rotation policy\n\nKeys are rotated every ninety days by the vault operator.\n"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "policies").mkdir(parents=True)
    real = root / "policies" / "rotation.md"
    real.write_text(TEXT, encoding="utf-8")
    # named to be read first: "a-link.md" sorts before "policies/"
    (root / "a-link.md").symlink_to(real)
    (root / "other.md").write_text("# Other\n\nNothing about keys here, only vaults.\n", encoding="utf-8")
    return root


async def test_the_real_file_is_named_not_the_link(docs: Path, tmp_path: Path) -> None:
    results = await LocalIndexSearch([docs], tmp_path / "idx.sqlite").search("keys rotated ninety days", 5)
    urls = [r.url for r in results]
    assert urls[0] == (docs / "policies" / "rotation.md").as_uri(), urls
    assert not any("a-link.md" in url for url in urls)


async def test_the_real_file_wins_where_the_link_is_the_only_hit_in_the_window(docs: Path, tmp_path: Path) -> None:
    """The copies rank alike; with one result asked the link's row may be the only one read."""
    search = LocalIndexSearch([docs], tmp_path / "idx.sqlite")
    results = await search.search("rotated", 1)
    assert [r.url for r in results] == [(docs / "policies" / "rotation.md").as_uri()]
    title, text = await search.read_document(results[0].url) or ("", "")
    assert "ninety days" in text


async def test_a_link_to_a_file_outside_the_folder_is_still_found(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "rotation.md"
    outside.parent.mkdir()
    outside.write_text(TEXT, encoding="utf-8")
    root = tmp_path / "docs"
    root.mkdir()
    (root / "rotation-link.md").symlink_to(outside)
    results = await LocalIndexSearch([root], tmp_path / "idx.sqlite").search("keys rotated", 3)
    assert [r.url for r in results] == [(root / "rotation-link.md").as_uri()]
