"""A sentence's quote is compared with its passage by the words of both (``grounding._words``),
now of any script. A Japanese or Chinese source wrapped at a column mid-word ("再起\\n動") held
the quoted `再起動` as two words, and the report's sentence quoting it was removed as
unsupported ("the quoted '再起動' is not in the cited passage"); a quoted code block, whose
lines the report reads joined by a space, must still be found in its passage."""

from __future__ import annotations

from graphs.research.grounding import ground
from graphs.research.passages import split_passages

WRAPPED = "# 手順\n\n設定を変えたら、変更後はサービスを再起\n動してください。"


def test_a_quote_of_a_word_the_source_wraps_is_supported() -> None:
    result = ground("変更後はサービスを`再起動`してください。[1]\n", {1: split_passages(WRAPPED)}, titles={1: "手順"})
    assert not result.unsupported
    assert "再起動" in result.report


def test_a_quote_of_a_japanese_code_block_is_supported() -> None:
    source = "# 設定例\n\n設定ファイルの例です。\n\n```yaml\n名前: 太郎\n年齢: 20\n```\n"
    result = ground("設定ファイルの例は `名前: 太郎 年齢: 20` です。[1]\n", {1: split_passages(source)}, titles={1: "設定例"})
    assert not [u for u in result.unsupported if "quoted" in u["reason"]]
