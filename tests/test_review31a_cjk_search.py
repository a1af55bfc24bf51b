"""The local index over Japanese, Chinese and Korean documents as people write them: a word of
one character ("猫", Korean's "키") is found, and so are the letters and digits Japanese writes
full-width (ＵＳＢ, １０分) by the ones a question types, and a ligature pasted into a note."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_search_local import _write

from providers.search.local_index import LocalIndexSearch


def _names(results: list[Any]) -> list[str]:
    return sorted(Path(r.url.split("#")[0]).name for r in results)


async def test_a_question_of_one_cjk_character_finds_it_anywhere_in_a_run(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "cat-end.md", "# 动物\n\n这是我的猫。\n")
    _write(docs / "cat-mid.md", "# 宠物\n\n我的猫很可爱，每天睡觉。\n")
    _write(docs / "dog.md", "# 狗\n\n我的狗很可爱。\n")
    _write(docs / "key-ko.md", "# 안내\n\nAPI 키를 발급받으세요.\n")
    search = LocalIndexSearch([docs], tmp_path / "idx.sqlite")
    assert _names(await search.search("猫", 5)) == ["cat-end.md", "cat-mid.md"]
    assert _names(await search.search("키", 5)) == ["key-ko.md"]


async def test_full_width_letters_and_digits_are_found_by_plain_ones(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "usb.md", "# 接続\n\n本体にＵＳＢ、ＬＡＮケーブルを接続します。\n")
    _write(docs / "wait.md", "# 起動\n\n" + "毎日サービスを点検します。" * 30 + "起動には１０分かかります。\n")
    _write(docs / "other.md", "# メモ\n\n特に何もありません。\n")
    search = LocalIndexSearch([docs], tmp_path / "idx.sqlite")
    assert _names(await search.search("USB", 5)) == ["usb.md"]
    assert _names(await search.search("LAN cable", 5)) == ["usb.md"]
    found = await search.search("10分", 5)
    assert _names(found) == ["wait.md"]
    assert "１０分" in found[0].snippet  # the snippet of a long page is cut around it
    assert _names(await search.search("ＵＳＢ", 5)) == ["usb.md"]  # and typed full-width, as before


async def test_a_ligature_in_a_text_file_is_found_by_the_plain_word(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _write(docs / "notes.md", "# Notes\n\nThe conﬁguration ﬁle lives in etc.\n")
    _write(docs / "other.md", "# Other\n\nNothing here.\n")
    search = LocalIndexSearch([docs], tmp_path / "idx.sqlite")
    assert _names(await search.search("configuration", 5)) == ["notes.md"]
