"""The reviewer's entailment check: sentences the deterministic check cannot settle, confirmed or
rejected by a model of another family than the writer's.

``grounding.ground`` lists as *undecided* a cited sentence whose numbers and quotes its passage
holds but only part of whose content words it does. ``settle`` sends those sentences (at most
``limits.max_entailment_sentences``), each with the text of the passages it cites, to the research
route's reviewer in one JSON call (schema-constrained like the review) and turns its answers into
``ReviewerVerdict``s: entailed -> supported, not entailed -> unsupported with the reviewer's reason.

It asks nobody when the check is turned off, nothing is undecided, no reviewer is configured, the
reviewer is of the writer's family, or the reviewer's family was already skipped in this job (no
key, circuit open: the keyless case). A reviewer that fails, would pass the job's budget, answers
with no usable JSON, or is stood in for by a model of another family settles nothing. In each of
those cases the undecided sentences stay unsupported and are removed, as without a reviewer, and
the trace says why (an ``entail`` step, outcome ``skipped`` or ``error``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import BudgetExceeded
from graphs.progress import emit
from graphs.research import prompts
from graphs.research.grounding import ReviewerVerdict
from graphs.research.nodes import UNKNOWN, ask, first_family, node_step
from providers.base import LLMConfig, LLMProvider, TraceStep

#: the config key that caps (0: turns off) the sentences sent, named in skip reasons
CAP_KEY = "limits.max_entailment_sentences"


@dataclass(frozen=True)
class Reviewer:
    """Who may settle undecided sentences, and against whose family they are checked."""

    name: str | None
    family: str | None
    writer_family: str | None
    max_sentences: int


@dataclass
class Settlement:
    """What the reviewer settled: verdicts by normalised sentence, and how the step went."""

    status: str  # done | skipped | unavailable | unusable
    reason: str = ""
    model: str | None = None
    asked: int = 0
    verdicts: dict[str, ReviewerVerdict] = field(default_factory=dict)
    trace: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, "model": self.model, "asked": self.asked, "reason": self.reason}


def _skip_reason(undecided: Sequence[Any], reviewer: Reviewer, trace: Sequence[Mapping[str, Any]]) -> str | None:
    if not undecided:
        return "no undecided sentence"
    if reviewer.max_sentences <= 0:
        return f"turned off ({CAP_KEY} is 0)"
    if not reviewer.name:
        return "no reviewer configured for research (routing.delegation.research.reviewer)"
    if reviewer.family and reviewer.family == reviewer.writer_family:
        return (f"the reviewer {reviewer.name} is of the writer's family ({reviewer.family});"
                " only a model of another family may confirm")
    seen = [s for s in trace if s.get("kind") == "llm" and reviewer.family and s.get("provider") == reviewer.family]
    if seen and seen[-1].get("outcome") == "skipped":
        last = seen[-1]
        return f"the reviewer's family was skipped earlier in this job ({last.get('model')}: {last.get('detail') or 'unavailable'})"
    return None


def _not_callable(llm: Any, config: LLMConfig, reviewer: Reviewer) -> str | None:
    """Why the reviewer cannot be asked now, where the router can tell (its key unset, its circuit
    open): another family's model would answer in its place, be paid, and have its verdicts
    thrown away (DeepSeek answered every entailment call of a DeepSeek-only setup)."""
    family = first_family(llm, config)
    if family == UNKNOWN or not reviewer.family or (family == reviewer.family and family != reviewer.writer_family):
        return None
    passed = "; ".join(getattr(llm, "passed_over", lambda c: [])(config)[:3]) or "no model of its family is callable"
    return f"the reviewer {reviewer.name} cannot be asked now ({passed}); another model would answer in its place"


def _verdicts(text: str, items: Sequence[Mapping[str, Any]], model: str) -> dict[str, ReviewerVerdict] | None:
    """The reviewer's verdicts by sentence key; None when its answer holds no usable JSON."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        data = json.loads(match.group(0), strict=False) if match else None
    except json.JSONDecodeError:
        return None
    rows = data.get("verdicts") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return None
    keys = {int(item["id"]): str(item["key"]) for item in items}
    verdicts: dict[str, ReviewerVerdict] = {}
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("entailed"), bool):
            continue
        number = row.get("id")
        key = keys.get(number) if isinstance(number, int) and not isinstance(number, bool) else None
        if key is not None and key not in verdicts:
            reason = " ".join(str(row.get("reason") or "").split())[:200]
            verdicts[key] = ReviewerVerdict(entailed=row["entailed"], model=model, reason=reason)
    return verdicts if verdicts or not rows else None


async def settle(
    llm: LLMProvider,
    undecided: Sequence[Mapping[str, Any]],
    sources: Sequence[Mapping[str, Any]],
    reviewer: Reviewer,
    trace: Sequence[Mapping[str, Any]] = (),
) -> Settlement:
    """Ask the reviewer about ``undecided`` (``Grounding.undecided``) in one batched call.

    Args:
        llm: the job's (budgeted) LLM provider.
        undecided: sentences ``ground`` could not settle, with their cited passages.
        sources: the research sources (``id``, ``title``, ``url``) the passages come from.
        reviewer: the configured reviewer, its family and the writer's family.
        trace: the job's trace so far, to see whether the reviewer's family was skipped already.
    """
    started = time.perf_counter()
    config = LLMConfig(prefer=reviewer.name, json_schema=prompts.ENTAIL_SCHEMA, temperature=0.0, step="entail")
    skip = _skip_reason(undecided, reviewer, trace) or _not_callable(llm, config, reviewer)
    if skip is not None:
        steps = [] if not undecided else [node_step("entail", started, f"reviewer not asked: {skip}", "skipped")]
        return Settlement("skipped", skip, trace=steps)
    items = [{**u, "id": i} for i, u in enumerate(undecided[: reviewer.max_sentences], start=1)]
    emit("entail", f"asking {reviewer.name} about {len(items)} sentence(s) the words alone cannot settle")
    try:
        response, steps, error = await ask(llm, prompts.entail_messages(items, sources), config)
    except BudgetExceeded as exc:
        refused = getattr(exc, "refused", None) or TraceStep(step="entail", provider="budget", outcome="skipped").model_dump()
        why = f"the job's budget would be passed: {exc.to_dict()['message'][:200]}"
        # what the call's attempts before a refused fallback were billed stays in the trace
        billed = list(getattr(exc, "billed", None) or [])
        return Settlement("skipped", why, asked=0, trace=[*billed, refused, node_step("entail", started, why, "skipped")])
    outcome = _outcome(response, error, items, reviewer)
    outcome.trace = steps + [node_step("entail", started, outcome.reason or _done_detail(outcome),
                                       "ok" if outcome.status == "done" else "error")]
    return outcome


def _outcome(response: Any, error: str, items: Sequence[Mapping[str, Any]], reviewer: Reviewer) -> Settlement:
    asked = len(items)
    if response is None:
        return Settlement("unavailable", f"the reviewer failed: {error}"[:300], asked=asked)
    family = reviewer.family or response.provider
    if response.provider != family or response.provider == reviewer.writer_family:
        why = (f"{response.model} ({response.provider}) answered in place of the reviewer {reviewer.name};"
               " its verdicts are not used")
        return Settlement("unavailable", why, model=response.model, asked=asked)
    verdicts = _verdicts(response.text, items, response.model)
    if verdicts is None:
        return Settlement("unusable", f"{response.model}'s answer held no valid JSON verdicts", model=response.model, asked=asked)
    return Settlement("done", model=response.model, asked=asked, verdicts=verdicts)


def _done_detail(settlement: Settlement) -> str:
    entailed = sum(v.entailed for v in settlement.verdicts.values())
    return (f"{settlement.model} settled {len(settlement.verdicts)} of {settlement.asked} undecided sentence(s):"
            f" {entailed} entailed, {len(settlement.verdicts) - entailed} not")
