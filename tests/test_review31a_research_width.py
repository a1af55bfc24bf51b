"""A sentence's numbers and words are checked against a source that writes them full-width, as
Japanese text does (８０８０, ＵＳＢ), or half-width (ﾒﾓﾘ): a model's exact "8080" was reported as
a number the cited passage does not state."""

from __future__ import annotations

from graphs.research.grounding import ground
from graphs.research.stems import content_stems, numbers_in

JA = "ファルコンの待ち受けポートは８０８０です。設定はＵＳＢメモリに保存されます。"


def _passages(text: str) -> dict[int, list[dict[str, object]]]:
    return {1: [{"text": text, "heading": None, "start": 0, "end": len(text), "page": None}]}


def test_a_number_a_source_writes_full_width_supports_the_same_number() -> None:
    result = ground("ファルコンの待ち受けポートは8080です [1]。設定はUSBメモリに保存されます [1]。", _passages(JA))
    assert result.unsupported == [] and result.supported == 2
    english = ground("Falcon listens on port 8080 by default [1].", _passages("Falcon listens on port ８０８０ by default."))
    assert english.unsupported == [] and english.supported == 1


def test_another_number_is_still_caught() -> None:
    result = ground("ファルコンの待ち受けポートは8081です [1]。", _passages(JA))
    assert [u["reason"] for u in result.unsupported] == ["the cited passage does not state 8081"]
    assert numbers_in("½ cup") != numbers_in("¼ cup")  # a fraction stays itself


def test_half_width_katakana_and_full_width_letters_are_the_plain_words() -> None:
    assert content_stems("ｶﾞｿﾘﾝとＵＳＢ") == content_stems("ガソリンとUSB")
