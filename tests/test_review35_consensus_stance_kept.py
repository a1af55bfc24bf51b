"""A consensus position's echoed instruction is left out, never its stance (review of 07ab7cb:
"for" and "against" are prompt words, so a stance clause was taken for part of the echo)."""

from __future__ import annotations

import pytest

from graphs.consensus.nodes import position_text


@pytest.mark.parametrize(("answer", "kept"), [
    ("A clear position, the reasons for it. Against. Take the risk only with a fallback.",
     "Against. Take the risk only with a fallback."),
    ("Against it. The main risk or caveat: cost.", "Against it. The main risk or caveat: cost."),
    ("For it. The reasons are many.", "For it. The reasons are many."),
    ("Give your own answer: a clear position, the reasons for it, and the main risk or caveat. Rivers meander.",
     "Rivers meander."),
    ("A clear position, the reasons for it and a main risk or caveat. Rivers should stay public.",
     "Rivers should stay public."),  # the keyless model's echo, reworded (review of the fix)
])
def test_the_echo_goes_and_the_stance_stays(answer: str, kept: str) -> None:
    assert position_text(answer) == kept


def test_an_answer_that_is_only_the_instruction_is_no_position() -> None:
    assert position_text("A clear position, the reasons for it.") is None
