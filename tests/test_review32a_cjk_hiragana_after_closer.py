"""A Japanese sentence that starts in Hiragana after one ended inside a closing bracket
("…。」それから…", "…。）この…") is a sentence of its own, as one starting in Kanji or Katakana
already was; a particle that ties the quote to the rest of its sentence ("「はい。」と答えた",
"「はい。」という", "「停止。」を選ぶ") keeps them one sentence. The report cited the two as one,
its citation put after the second's stop."""

from __future__ import annotations

import pytest

from graphs.research.citations import split_sentences
from graphs.research.extractive import extractive_report
from graphs.research.passages import sentences_of, split_passages

MEMO = ("# 運用メモ\n\n「古いログは毎晩自動的に削除されます。」それから管理者は設定を確認した。"
        "（削除されたログは復元できません。）このため毎週バックアップを取ります。\n")


@pytest.mark.parametrize(("text", "expected"), [
    ("「古いログは削除されます。」それから管理者は帰った。", ["「古いログは削除されます。」", "それから管理者は帰った。"]),
    ("（復元できません。）このため毎週保存します。", ["（復元できません。）", "このため毎週保存します。"]),
    ("『はい。』もし失敗したら再起動します。", ["『はい。』", "もし失敗したら再起動します。"]),
    ("「はい。」ところで設定は正しい。", ["「はい。」", "ところで設定は正しい。"]),
    ("「はい。」次に再起動した。", ["「はい。」", "次に再起動した。"]),
])
def test_a_sentence_starting_in_hiragana_after_a_closed_one_is_its_own(text: str, expected: list[str]) -> None:
    assert sentences_of(text) == expected
    assert split_sentences(text) == expected


@pytest.mark.parametrize("text", ["彼は「はい。」と答えた。", "「はい。」という返事だった。", "「停止。」を選ぶと止まります。",
                                  "「はい。」って言った。", "「完了。」の表示が出ます。", "「はい。」、と彼は言った。",
                                  "「はい。」には理由がある。", "「保存。」への変更は残る。"])
def test_a_quote_its_sentence_goes_on_after_stays_in_it(text: str) -> None:
    assert sentences_of(text) == [text]


def test_the_report_cites_the_closed_sentence_alone() -> None:
    sources = [{"id": 1, "snippet": "", "title": "運用メモ"}]
    report = extractive_report("古いログはいつ削除されますか？", [], sources, {"1": split_passages(MEMO)})
    assert "「古いログは毎晩自動的に削除されます [1]。」" in report, report
    assert "削除されます。」" not in report and "復元できません。）" not in report, report
