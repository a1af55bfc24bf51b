"""The ends of a Japanese or Chinese sentence beyond 。！？: the full-width full stop "．" of academic
Japanese, a run of stops ("！？"), and a stop inside a closing quote or bracket ("…と言った。」",
"。）", "。』"). The keyless report wrote "…ます． [2]." and "…。」 [1].": the sentence was not
read as ended, and its citation was put after it with an ASCII full stop added; "本当！？" was
two sentences, "本当！" and "？". The citation goes before the stop, the bracket stays closed."""

from __future__ import annotations

from pathlib import Path

from test_research_cjk import _research
from test_search_local import _write

from graphs.research.extractive import extractive_report
from graphs.research.passages import sentences_of, split_passages
from graphs.research.quoting import cite

#: academic Japanese: sentences ended with ． (and a version number's ． that ends none)
ACADEMIC = "# 保存期間\n\nログは七日間保存されます．古いログは毎晩自動的に削除されます．この仕様はバージョン３．５からです．\n"
#: a dialogue line and a bracketed sentence, each ended inside its closing bracket
QUOTED = ("# 運用メモ\n\n「古いログは毎晩自動的に削除されます。」管理者はそう説明した。"
          "（削除されたログは復元できません。）彼は「はい。」と答えた。\n")


def _sources(title: str) -> list[dict[str, object]]:
    return [{"id": 1, "snippet": "", "title": title}]


def test_a_full_width_full_stop_ends_a_sentence_and_its_citation_goes_before_it() -> None:
    assert cite("ログは七日間保存されます．", 2) == "ログは七日間保存されます [2]．"
    assert cite("本当に削除されますか！？", 2) == "本当に削除されますか [2]！？"
    assert sentences_of(ACADEMIC.split("\n\n")[1]) == [
        "ログは七日間保存されます．", "古いログは毎晩自動的に削除されます．", "この仕様はバージョン３．５からです．"]
    assert sentences_of("本当に削除されますか！？はい。") == ["本当に削除されますか！？", "はい。"]
    report = extractive_report("古いログはいつ削除されますか？", [], _sources("保存期間"), {"1": split_passages(ACADEMIC)})
    assert "古いログは毎晩自動的に削除されます [1]．" in report, report
    assert "． [" not in report and "]." not in report, report


def test_a_sentence_ended_inside_a_closing_bracket_is_cited_before_its_stop() -> None:
    assert cite("「古いログは毎晩自動的に削除されます。」", 1) == "「古いログは毎晩自動的に削除されます [1]。」"
    assert cite("（削除されたログは復元できません。）", 1) == "（削除されたログは復元できません [1]。）"
    assert cite("彼は『はい。』", 1) == "彼は『はい [1]。』"
    assert sentences_of(QUOTED.split("\n\n")[1]) == [
        "「古いログは毎晩自動的に削除されます。」", "管理者はそう説明した。", "（削除されたログは復元できません。）",
        "彼は「はい。」と答えた。"]  # a quote the sentence goes on after is inside it
    report = extractive_report("削除されたログは復元できますか？", [], _sources("運用メモ"), {"1": split_passages(QUOTED)})
    assert "（削除されたログは復元できません [1]。）" in report, report
    assert "]." not in report and "。） [" not in report, report


async def test_the_research_report_cites_such_sentences_before_their_stops(tmp_path: Path) -> None:
    """What a user reads: the keyless report of a question over these documents, and its claims."""
    reports = {}
    for name, text in (("retention.md", ACADEMIC), ("memo.md", QUOTED)):
        _write(tmp_path / name / "docs" / name, text)
        result = await _research(tmp_path / name, tmp_path / name / "docs", "古いログはいつ自動的に削除されますか？", ["古いログ 削除"])
        assert result["support"] == 1.0, result["citations"]
        assert all(not c["claim"].endswith(".") for c in result["citations"]), result["citations"]
        reports[name] = report = result["report"]
        assert "]." not in report and "． [" not in report and "。」 [" not in report and "。） [" not in report, report
    assert "古いログは毎晩自動的に削除されます [1]．" in reports["retention.md"], reports["retention.md"]
    assert "「古いログは毎晩自動的に削除されます [1]。」" in reports["memo.md"], reports["memo.md"]
