"""The local index over documents that mix CJK text with Latin words, as Japanese and Korean
write them: a product name glued to a particle ("Docker를", "PostgreSQLの") is still found by
that name, and a long CJK question keeps the English words it ends with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from providers.search.local_index import LocalIndexSearch

KO_DOC = "# 설치 안내\n\nDocker를 설치한 후 Kubernetes에 배포하세요. 설정은 config.yaml에 있습니다.\n"
JA_DOC = "# 手順\n\nPostgreSQLのバックアップは毎晩cronで実行されます。\n"
EN_DOC = "# Errors\n\nA ConnectionRefusedError means the model server is not running; start it first.\n"
OTHER = "# notes\n\nNothing about containers or databases here.\n"


def _names(results: list[Any]) -> list[str]:
    return [Path(r.url.split("#")[0]).name for r in results]


def _docs(root: Path) -> Path:
    root.mkdir()
    for name, text in {"install-ko.md": KO_DOC, "backup-ja.md": JA_DOC, "errors-en.md": EN_DOC,
                       "other.md": OTHER}.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


async def test_a_latin_word_glued_to_cjk_letters_is_found_by_itself(tmp_path: Path) -> None:
    search = LocalIndexSearch([_docs(tmp_path / "docs")], tmp_path / "idx.sqlite")
    assert _names(await search.search("docker", 3)) == ["install-ko.md"]
    assert _names(await search.search("How do I deploy to Kubernetes?", 3)) == ["install-ko.md"]
    assert _names(await search.search("postgresql cron", 3)) == ["backup-ja.md"]
    found = await search.search("kubernetes", 3)
    assert "Kubernetes" in found[0].snippet


async def test_a_long_cjk_question_keeps_its_english_words(tmp_path: Path) -> None:
    search = LocalIndexSearch([_docs(tmp_path / "docs")], tmp_path / "idx.sqlite")
    question = ("昨日の夜からローカル環境で毎回同じエラーメッセージが表示されるようになり作業が止まっています。"
                "原因と対処方法を教えてください: ConnectionRefusedError")
    assert _names(await search.search(question, 3))[:1] == ["errors-en.md"]


async def test_the_snippet_of_a_long_page_shows_the_glued_word_it_was_found_by(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    filler = "서비스는 매일 점검합니다. " * 200
    (root / "long-ko.md").write_text(f"# 안내\n\n{filler}마지막으로 Helm으로 차트를 올립니다.\n", encoding="utf-8")
    found = await LocalIndexSearch([root], tmp_path / "idx.sqlite").search("helm chart", 3)
    assert _names(found) == ["long-ko.md"] and "Helm으로" in found[0].snippet
