"""Japanese, Chinese and Korean text in the keyless report, beyond finding and quoting it
(``test_research_cjk.py``): a source wrapped in the middle of a sentence is read and quoted as
one sentence, a report's CJK sentences are joined without a space, and a passage that shares
half a word with a CJK question (ファ of ファイル, said by ファルコン) is not quoted as answering it.
English is read, joined and matched as before."""

from __future__ import annotations

from graphs.research.extractive import extractive_report
from graphs.research.grounding import ground
from graphs.research.passages import sentences_of, split_passages
from graphs.research.quoting import flatten
from graphs.research.repeats import drop_repeats
from graphs.research.stems import content_stems

#: Markdown source wrapped at a column, in the middle of 再起動 ("restart")
WRAPPED = "# ファルコンの使い方\n\n## 設定\n\n設定ファイルの場所は ~/.config/falcon/settings.yaml です。変更したらサービスを再起\n動してください。\n"
RESTART = "変更したらサービスを再起動してください。"
JA_DOC = """# ファルコンの使い方

ファルコンはログを集めて転送するエージェントです。インストールは数分で終わります。

## 設定

設定ファイルの場所は ~/.config/falcon/settings.yaml です。変更したらサービスを再起動してください。

## ログ

ログは /var/log/falcon に七日間保存されます。古いログは自動的に削除されます。
"""
#: a page that shares one character pair (ファ) with ファイル, and nothing else, with the question
BIRD_DOC = "# ファルコン\n\nファルコンは速い鳥です。空を飛びます。\n"


def _sources(*titles: str) -> list[dict[str, object]]:
    return [{"id": n, "snippet": "", "title": title} for n, title in enumerate(titles, start=1)]


def test_a_line_break_inside_a_cjk_run_is_no_space() -> None:
    passage = split_passages(WRAPPED)[0]["text"]
    assert "再起\n動" in passage  # the passage is a verbatim slice of the source
    assert flatten(passage).endswith(RESTART)
    assert sentences_of(passage)[-1] == RESTART
    assert "起動" in content_stems(passage)  # the pair across the break is a word of the passage
    # English lines, and a line break between a CJK letter and a Latin word, keep their space
    assert flatten("It runs\nfast.") == "It runs fast."
    assert flatten("設定は\nyaml です。") == "設定は yaml です。"
    assert sentences_of("ログは\nlog です。") == ["ログは log です。"]
    assert content_stems("The providers\nare failing") == ["provid", "fail"]
    assert flatten("설정 파일은\n다시 시작하세요.") == "설정 파일은 다시 시작하세요."  # Korean spaces its words


def test_a_wrapped_source_is_quoted_as_one_sentence() -> None:
    report = extractive_report("サービスを再起動するのはいつ？", [], _sources("ファルコンの使い方"),
                               {"1": split_passages(WRAPPED)})
    assert "再起動してください [1]。" in report, report
    assert "None of the sources" not in report, report  # 起動 was said by no source


def test_a_report_line_wrapped_inside_a_cjk_run_is_joined_without_a_space() -> None:
    passages = {1: split_passages(JA_DOC)}
    grounded = ground("## 設定\n\n変更したらサービスを再起\n動してください [1]。\n", passages)
    assert grounded.supported == 1
    assert "再起動してください [1]。" in grounded.report, grounded.report


def test_cjk_sentences_are_joined_without_a_space() -> None:
    passages = {1: split_passages(JA_DOC)}
    report = "## 設定\n\n設定ファイルの場所は ~/.config/falcon/settings.yaml です [1]。変更したらサービスを再起動してください [1]。\n"
    grounded = ground(report, passages)
    assert grounded.supported == 2
    assert grounded.report == report, grounded.report
    assert drop_repeats(report)[0] == report
    # a marker a model writes after the full stop stays where it was written
    after = "## 設定\n\n設定ファイルは ~/.config/falcon/settings.yaml です。[1]変更したらサービスを再起動してください。[1]\n"
    assert drop_repeats(after)[0] == after
    # English sentences keep their space
    english = "## Notes\n\nIt works [1]. Logs are kept [1].\n"
    assert drop_repeats(english)[0] == english


def test_an_extractive_quote_of_cjk_sentences_has_no_space_between_them() -> None:
    doc = f"{JA_DOC}\n## ログの転送\n\nログは毎分サーバーに転送されます。転送に失敗したログは一時間後に再送されます。\n"
    report = extractive_report("ログはいつ削除されますか？", [], _sources("ファルコンの使い方"), {"1": split_passages(doc)})
    assert "- ログは毎分サーバーに転送されます [1]。転送に失敗したログは一時間後に再送されます [1]。" in report, report
    assert "。 " not in report, report


def test_half_a_word_shared_with_a_cjk_question_is_no_answer() -> None:
    passages = {"1": split_passages(JA_DOC), "2": split_passages(BIRD_DOC)}
    report = extractive_report("設定ファイルの場所はどこですか？", ["設定ファイル 場所"],
                               _sources("ファルコンの使い方", "ファルコン"), passages)
    assert "settings.yaml です [1]。" in report, report
    assert "ファルコンは" not in report, report  # ファ of ファイル, and no other pair of the question


def test_half_a_word_opens_no_report_on_a_one_word_cjk_question() -> None:
    report = extractive_report("ファイル", [], _sources("ファルコン"), {"1": split_passages(BIRD_DOC)})
    assert "ファルコンは" not in report, report
    files = "# 手順\n\n設定ファイルを開きます。\n"
    report = extractive_report("ファイル", [], _sources("ファルコン", "手順"),
                               {"1": split_passages(BIRD_DOC), "2": split_passages(files)})
    assert "- 設定ファイルを開きます [2]。" in report and "ファルコンは" not in report, report
