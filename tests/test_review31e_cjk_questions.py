"""A question ends with a full-width "？" in Japanese and Chinese (and "?!", "！？" where it is
asked in surprise): ``is_factual`` read only an ASCII "?" as a question, so an uncited CJK question
of a report was taken for a fact without a source and removed, and a question heading stating a
number no source holds was dropped, where an English one stays."""

from __future__ import annotations

import pytest

from graphs.research.grounding import ground, is_factual
from graphs.research.passages import split_passages

PASSAGES = {1: split_passages("# 备份\n\n数据库备份每天凌晨两点运行。备份文件保存三十天。\n")}


@pytest.mark.parametrize("question", [
    "数据库备份什么时候运行？", "データベースのバックアップはいつ実行されますか？", "本当に削除されますか！？",
    "Does the database backup run every night?!", "¿Does the database backup run every night?",
    "백업은 언제 실행됩니까?",
])
def test_a_question_is_no_claim_in_any_script(question: str) -> None:
    assert not is_factual(question, cited=False)


@pytest.mark.parametrize("statement", [
    "数据库备份每天凌晨两点运行。", 'The operator asked "does the backup run every night?" and got no answer.',
    "数据库备份每天运行！",
])
def test_a_statement_stays_a_claim(statement: str) -> None:
    assert is_factual(statement, cited=False)


def test_an_uncited_cjk_question_stays_in_the_report_as_an_english_one_does() -> None:
    for question in ("数据库备份什么时候运行？", "When does the database backup run?"):
        report = f"{question}数据库备份每天凌晨两点运行 [1]。\n"
        result = ground(report, PASSAGES)
        assert question in result.report and result.unsupported == [], result
        assert result.factual == result.supported == 1, result


def test_a_cjk_question_heading_is_kept_as_an_english_one_is() -> None:
    for heading in ("## 备份在 3 点运行吗？", "## Does the backup run at 3?"):
        result = ground(f"{heading}\n\n数据库备份每天凌晨两点运行 [1]。\n", PASSAGES)
        assert heading in result.report and result.unsupported == [], result
