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
