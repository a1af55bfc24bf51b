"""A report's lines that differ only in full-width Latin letters or digits (ＰＣ, ＯＳ, Ｖ１, as
Japanese text writes them), or in letters outside Latin and CJK (Cyrillic, Greek, umlauts), are
different lines, not repeats of one another: the comparison key kept [a-z0-9] and CJK runs only."""

from __future__ import annotations

from graphs.research.repeats import drop_repeats


def test_lines_that_differ_in_full_width_letters_are_both_kept() -> None:
    report = "## 手順\n\nＰＣを再起動します [1]。\n\nＯＳを再起動します [2]。\n\n- Ｖ１を削除します [1]。\n- Ｖ２を削除します [2]。\n"
    text, dropped = drop_repeats(report)
    assert dropped == []
    assert "ＯＳを再起動します" in text and "Ｖ２を削除します" in text


def test_lines_in_cyrillic_or_with_umlauts_that_share_only_a_number_are_both_kept() -> None:
    report = "## Итог\n\nСервер хранит результаты 30 минут [1].\n\nКлиент повторяет запрос 30 раз [2].\n"
    text, dropped = drop_repeats(report)
    assert dropped == [] and "Клиент повторяет запрос 30 раз [2]." in text
    text, dropped = drop_repeats("## Maße\n\nDie Größe ist 5 [1].\n\nDie Grüße ist 5 [2].\n")
    assert dropped == [] and "Die Grüße ist 5 [2]." in text


def test_a_changed_vulgar_fraction_or_circled_number_is_caught_like_a_digit() -> None:
    """'½' was no number to the check (``isdigit`` is False for it), so a sentence saying ½ passed
    against a passage saying ¼."""
    from graphs.research.grounding import ground

    passages = {1: [{"text": "Mix ¼ cup of flour with the eggs, then rest it for ② hours.", "heading": None,
                     "start": 0, "end": 60, "page": None}]}
    result = ground("Mix ½ cup of flour with the eggs [1]. Rest it for ② hours [1].", passages)
    assert [u["reason"] for u in result.unsupported] == ["the cited passage does not state ½"]
    assert result.supported == 1
