"""The citation checker on its own: invented ids removed, claims tied to sources, repairs."""

from __future__ import annotations

import re

from graphs.research.citations import check_citations

SOURCES = [{"id": i, "url": f"https://example.org/{i}", "title": f"Source {i}"} for i in range(1, 6)]


def _markers(text: str) -> set[int]:
    return {int(n) for group in re.findall(r"\[([\d, ]+)\]", text) for n in group.split(",") if n.strip()}


def test_citation_to_source_seven_of_five_is_removed_and_reported():
    check = check_citations("Checkpoints save state [1]. Sync durability is safer [7].", SOURCES)
    assert "[7]" not in check.report
    assert check.removed == [{"marker": "[7]", "source_id": 7, "reason": "no source 7 was retrieved (sources are 1-5)"}]
    assert check.citations == [{"claim": "Checkpoints save state.", "source_ids": [1]}]
    assert _markers(check.report) <= {1, 2, 3, 4, 5}


def test_mixed_bracket_keeps_the_valid_ids():
    check = check_citations("Claim one [2, 9]. Claim two [3-4].", SOURCES)
    assert "[2]" in check.report and "9" not in check.report.split("## Sources")[0]
    assert [c["source_ids"] for c in check.citations] == [[2], [3, 4]]
    assert [r["source_id"] for r in check.removed] == [9]


def test_a_huge_citation_range_is_capped_and_keeps_its_valid_ids():
    """``[1-9999]`` against three sources reported some 10,000 removed citations (one per id the
    range spans): a range reaches at most 20 ids past its start, and the real ones stay."""
    check = check_citations("Everything is known [1-9999].", SOURCES[:3])
    assert [c["source_ids"] for c in check.citations] == [[1, 2, 3]]
    assert "[1, 2, 3]" in check.report.split("## Sources")[0]
    assert [r["source_id"] for r in check.removed] == list(range(4, 22))
    assert check.removed[0] == {"marker": "[1-9999]", "source_id": 4, "reason": "no source 4 was retrieved (sources are 1-3)"}


def test_no_sources_means_every_citation_goes():
    check = check_citations("Made up fact [1]. Another [2].", [])
    assert "[" not in check.report and len(check.removed) == 2
    assert check.citations == [] and check.cited_ids == []
    assert check.removed[0]["reason"] == "no source 1 was retrieved (no sources were retrieved)"


def test_model_sources_section_is_replaced_by_the_real_one():
    report = "# Answer\n\nFact [1].\n\n## References\n\n[1] Totally Real Paper (https://evil.example)\n[8] Invented\n"
    check = check_citations(report, SOURCES)
    assert check.dropped_sources_section
    assert "evil.example" not in check.report and "Invented" not in check.report
    assert check.report.endswith("## Sources\n\n- [1] [Source 1](<https://example.org/1>)\n")
    assert check.removed == []


def test_variants_are_repaired_not_removed():
    check = check_citations("A [Source 2]. B [^3]. C [4](https://x.org/y).", SOURCES)
    assert [c["source_ids"] for c in check.citations] == [[2], [3], [4]]
    assert "https://x.org/y" not in check.report.split("## Sources")[0]


def test_citation_after_the_full_stop_belongs_to_that_sentence():
    check = check_citations("- First point. [1] Second point [2].\n", SOURCES)
    assert check.citations == [
        {"claim": "First point.", "source_ids": [1]},
        {"claim": "Second point.", "source_ids": [2]},
    ]


def test_support_scores_the_wording_of_claims_against_source_text():
    texts = {1: "A checkpointer saves graph state after every step.", 2: "Bananas are yellow."}
    check = check_citations("The checkpointer saves state after every step [1]. The checkpointer saves state [2].", SOURCES, texts)
    assert check.citations[0]["support"] == 1.0
    assert check.citations[1]["support"] == 0.0


def test_markdown_links_and_code_are_not_citations():
    check = check_citations("See [the docs](https://x.org). Use `a[0]` here.\n```\nx = [1]\n```\n", SOURCES)
    assert check.citations == [] and check.removed == []


def test_a_sentence_that_opens_with_code_is_its_own_claim() -> None:
    """Code spans are hidden behind placeholders while citations are read; a sentence opening
    with one still starts a new claim, so each claim matches the sentence the checker grounded."""
    from graphs.research.citations import check_citations

    report = ("`routing.delegation.<kind>` names a `primary` and an optional `reviewer` [1]. "
              "`research: { primary: \"deepseek\" }` means the research graph writes with DeepSeek first [1].")
    result = check_citations(report, [{"id": 1, "url": "file:///x.md", "title": "x"}], {1: report})
    assert [c["claim"] for c in result.citations] == [
        "`routing.delegation.<kind>` names a `primary` and an optional `reviewer`.",
        "`research: { primary: \"deepseek\" }` means the research graph writes with DeepSeek first.",
    ]
