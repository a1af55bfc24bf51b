"""A lead-in followed only by its citation ("The steps are: [1]", "手順は次のとおりです：[1]") under
which nothing comes is dangling, as the bare "The steps are:" is: a statement cut short, checked
as the claim it is. It was read as no claim at all and kept, unchecked, whatever it said; with
its list under it, it is still a lead-in."""

from __future__ import annotations

import pytest

from graphs.research.grounding import ground
from graphs.research.markdown_blocks import dangling_lead_ins
from graphs.research.passages import split_passages

SOURCE = "# Logs\n\nThe falcon agent purges old logs every night at midnight.\n"


@pytest.mark.parametrize("lead_in", ["The steps are: [1]", "The steps are：[1]", "The steps are: [1, 2]",
                                     "**The steps are:** [1]", "デプロイの手順は次のとおりです：[1]"])
def test_a_cited_lead_in_under_which_nothing_comes_is_dangling(lead_in: str) -> None:
    assert dangling_lead_ins(f"## Steps\n\n{lead_in}\n\n## Next\n\nMore text.\n") == {lead_in}
    assert dangling_lead_ins(f"## Steps\n\n{lead_in}\n") == {lead_in}
    assert dangling_lead_ins(f"## Steps\n\n{lead_in}\n\n- An item [1].\n") == set()


@pytest.mark.parametrize("cite", ["", " [1]"])
def test_a_dangling_lead_in_the_source_does_not_hold_goes_cited_or_not(cite: str) -> None:
    lead_in = f"The falcon agent rotates its quuxel keys as follows:{cite}"
    report = f"## Keys\n\n{lead_in}\n\n## Logs\n\nThe falcon agent purges old logs every night at midnight [1].\n"
    grounded = ground(report, {1: split_passages(SOURCE)})
    assert "quuxel" not in grounded.report, grounded.report
    assert [u["sentence"] for u in grounded.unsupported] == ["The falcon agent rotates its quuxel keys as follows:"]


def test_a_cited_lead_in_with_its_list_stays() -> None:
    report = ("## Logs\n\nThe falcon agent purges its logs as follows: [1]\n\n"
              "- The falcon agent purges old logs every night at midnight [1].\n")
    grounded = ground(report, {1: split_passages(SOURCE)})
    assert "The falcon agent purges its logs as follows: [1]" in grounded.report, grounded.report
    assert grounded.unsupported == [], grounded.unsupported
