"""A lead-in ends with a colon, ASCII ":" or full-width "：" (as Japanese and Chinese write it),
and ``grounding.is_factual`` and ``markdown_blocks.dangling_lead_ins`` read it by one rule
(``passages.ends_lead_in``). With ":" alone, "デプロイの手順は次のとおりです：" was checked as an
uncited claim and removed from the report, list and all but its items; and a bold lead-in under
which nothing came ("**The falcon agent purges its logs as follows:**") was never read as cut short."""

from __future__ import annotations

import pytest

from graphs.research.grounding import ground, is_factual
from graphs.research.markdown_blocks import dangling_lead_ins
from graphs.research.passages import split_passages

SOURCE = ("# デプロイ\n\n設定ファイルを編集してからエージェントを再起動します。エージェントは毎晩ログを削除します。\n\n"
          "The falcon agent purges old logs every night at midnight.\n")


@pytest.mark.parametrize("lead_in", ["デプロイの手順は次のとおりです：", "部署步骤如下：", "The deployment steps are:",
                                     "**The deployment steps are:**", "The deployment steps are："])
def test_a_lead_in_with_any_colon_is_no_claim(lead_in: str) -> None:
    assert not is_factual(lead_in, cited=False)
    assert is_factual(lead_in, cited=False, lead_in=False)


@pytest.mark.parametrize("lead_in", ["デプロイの手順は次のとおりです：", "The deployment steps are：",
                                     "**The falcon agent purges its logs as follows:**"])
def test_a_lead_in_under_which_nothing_comes_is_dangling(lead_in: str) -> None:
    assert dangling_lead_ins(f"## Steps\n\n{lead_in}\n\n## Next\n\nMore text.\n") == {lead_in}
    assert dangling_lead_ins(f"## Steps\n\n{lead_in}\n\n- An item [1].\n") == set()


def test_a_full_width_lead_in_stays_in_the_report_with_its_list() -> None:
    report = "## 手順\n\nデプロイの手順は次のとおりです：\n\n- 設定ファイルを編集してからエージェントを再起動します [1]。\n"
    grounded = ground(report, {1: split_passages(SOURCE)})
    assert "デプロイの手順は次のとおりです：" in grounded.report, grounded
    assert grounded.unsupported == [], grounded.unsupported


@pytest.mark.parametrize("lead_in", ["エージェントは毎晩ログを削除する前に確認します：",
                                     "**The falcon agent purges its logs as follows:**"])
def test_a_dangling_lead_in_is_checked_as_the_claim_it_is(lead_in: str) -> None:
    """Under it comes only a heading: a statement cut short, uncited, so it goes; the two rules
    agree on what a lead-in ends with."""
    report = f"## Purge\n\n{lead_in}\n\n## Logs\n\nThe falcon agent purges old logs every night at midnight [1].\n"
    grounded = ground(report, {1: split_passages(SOURCE)})
    assert lead_in not in grounded.report, grounded.report
    assert [u["reason"] for u in grounded.unsupported] == ["states a fact without citing a source"], grounded.unsupported
