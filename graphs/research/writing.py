"""The writing nodes of the research graph: write, check, review.

``write`` (``writer.py``) drafts the report: abstractive (a model writes it from the passages) or
extractive (the passages' own words, no model). With ``mode: auto`` it is extractive where only
the local model would write it, which is then not asked. ``check`` drops repeated sentences, keeps only the factual sentences a cited passage
backs (``grounding.py``), has the reviewer settle those the words alone cannot (``entailment.py``,
one call), falls back to the extractive report in auto mode when an abstractive draft fails that
check, and then maps the remaining citations (``citations.py``). In abstractive mode a draft of
which nothing survives goes back to the writer with the check's reasons as the review (``review``
passes them on without a model call) while a revision is left and the writer is not the local
model; otherwise the report quotes the sources, with a warning, rather than come back empty.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from graphs.progress import emit
from graphs.research import prompts
from graphs.research.citations import check_citations, cited_pages, normalize_report
from graphs.research.entailment import Reviewer, Settlement, settle
from graphs.research.fragments import cited_quotes, linked
from graphs.research.grounding import Grounding, ReviewerVerdict, ground, normalise
from graphs.research.nodes import UNKNOWN, Node, ResearchDeps, ask, first_family, node_step, stage_at
from graphs.research.passages import Passage, snippet_passage
from graphs.research.repeats import drop_repeats
from graphs.research.state import ResearchState
from graphs.research.subjects import missing_line, source_texts, unmentioned
from graphs.research.writer import LOCAL_FAMILY, extractive, write_node
from providers.base import LLMConfig

#: in auto mode an abstractive draft with less support than this is replaced by the extractive report
MIN_DRAFT_SUPPORT = 0.75
NOTHING_SUPPORTED = (
    "None of the writer's sentences is backed by the passage it cites, so every one was removed"
    " (see unsupported_sentences).\n"
)
_OUTER_FENCE = re.compile(r"^\s*```[\w-]*\n(.*)\n```\s*$", re.DOTALL)


def _passages(state: ResearchState) -> dict[int, list[Passage]]:
    """Source id -> what the checker holds its sentences against: the passages read, else the snippet."""
    read = state.get("passages", {})
    return {int(s["id"]): read.get(str(s["id"])) or [snippet_passage(str(s.get("snippet", "")))] for s in state["sources"]}


def _screen(
    draft: str, state: ResearchState, verdicts: dict[str, ReviewerVerdict] | None = None
) -> tuple[Grounding, list[dict[str, str]], bool]:
    """Normalise, drop repeats, ground: (grounding, repeats dropped, model sources section dropped)."""
    fenced = _OUTER_FENCE.match(draft)  # a report wrapped whole in a code fence is prose, not code
    text, dropped_section = normalize_report(fenced.group(1) if fenced else draft)
    passages = _passages(state)
    text, repeats = drop_repeats(text, passages)
    titles = {int(s["id"]): str(s.get("title", "")) for s in state["sources"]}
    return ground(text, passages, titles=titles, verdicts=verdicts), repeats, dropped_section


def _reviewer(state: ResearchState) -> Reviewer:
    return Reviewer(name=state.get("reviewer"), family=state.get("reviewer_family"),
                    writer_family=state.get("writer_family"), max_sentences=state.get("max_entailment_sentences", 0))


def _grounding_field(first: Grounding, reviewed: Grounding, final: Grounding, settlement: Settlement) -> dict[str, Any]:
    """The ``grounding`` result: the final report's figures and what the reviewer settled."""
    return {
        "factual": final.factual, "supported": final.supported, "support": final.support,
        "undecided": len(first.undecided), "settled_by_reviewer": reviewed.entailed + reviewed.not_entailed,
        "entailed": reviewed.entailed, "not_entailed": reviewed.not_entailed,
        "reviewer": settlement.summary(),
    }


def _fails(grounding: Grounding) -> bool:
    return grounding.supported == 0 or (grounding.support or 0.0) < MIN_DRAFT_SUPPORT


def _revision_left(state: ResearchState) -> bool:
    """Another draft may be written: revisions remain and the writer is not the local model,
    which would write the same kind of draft again."""
    return state.get("writer_family") != LOCAL_FAMILY and state.get("revisions", 0) < state.get("max_revisions", 0)


def _nothing_left(grounding: Grounding) -> bool:
    """No fact survived the check: what is left is debris (fragments, lead-ins) or nothing."""
    return not grounding.report.strip() or bool(grounding.factual and not grounding.supported)


def _check_node(deps: ResearchDeps) -> Node:
    async def check(state: ResearchState) -> dict[str, Any]:
        started = time.perf_counter()
        if not state["sources"]:  # the no-sources report cites nothing and states only what was tried
            text, repeats = drop_repeats(state["draft"])
            return {"report": text, "citations": [], "removed_citations": [], "unsupported_sentences": [],
                    "support": None, "repeats_removed": repeats, "warnings": [], "grounding": None,
                    "trace": [node_step("check", started, "no sources: nothing to check")]}
        if state.get("draft_stands"):  # the text checked last round, unchanged: its check stands
            return {"warnings": [*state.get("warnings", []), str(state.get("writer_note") or "")],
                    "trace": [node_step("check", started, "the draft stands: its check stands (no model called)")]}
        emit("check", "checking every sentence against the passage it cites",
             stage_at("check", revision=state.get("revisions", 0)))
        first, repeats, dropped_section = _screen(state["draft"], state)
        settlement = await settle(deps.llm, first.undecided, state["sources"], _reviewer(state), state.get("trace", []))
        reviewed = _screen(state["draft"], state, settlement.verdicts)[0] if settlement.verdicts else first
        return _checked(state, started, (first, reviewed, settlement), repeats, dropped_section)

    return check


def _checked(state: ResearchState, started: float, screened: tuple[Grounding, Grounding, Settlement],
             repeats: list[dict[str, str]], dropped_section: bool) -> dict[str, Any]:
    """The check's result from the draft's grounding before and after the reviewer's verdicts:
    the auto-mode fallback to the extractive report, the citations mapped, warnings, the trace."""
    first, reviewed, settlement = screened
    grounding = reviewed
    sources = state["sources"]
    report_mode = state.get("report_mode")
    unsupported = list(grounding.unsupported)
    warnings: list[str] = []
    if state.get("write_failure"):  # the fallback is useful, but not what was asked: say so, and why
        asked = "an abstractive report was asked for" if state.get("mode") == "abstractive" else "in auto mode a model writes the report"
        warnings.append(f"{asked}, but no model could write it ({state['write_failure']});"
                        " the report quotes the sources instead")
    if state.get("writer_note"):
        warnings.append(str(state["writer_note"]))
    if reviewed.undecided:
        warnings.append(f"{len(reviewed.undecided)} sentence(s) whose words the cited passage only partly holds were removed"
                        f" unconfirmed ({'the reviewer did not settle them' if settlement.status == 'done' else settlement.reason})")
    mode = state.get("mode", "auto")
    # asked for a written report and none of it is backed: revise with the check's reasons where a
    # revision is left (the review node passes them on), else quote the sources rather than return nothing
    none_backed = report_mode == "abstractive" and _nothing_left(grounding)
    revise = none_backed and mode == "abstractive" and _revision_left(state)
    # a weak draft (support under MIN_DRAFT_SUPPORT) is replaced in auto mode, and whenever the local
    # model wrote it: it gets no revision, and its few backed sentences held fewer facts than quotes
    weak = _fails(grounding) and (mode == "auto" or state.get("writer_family") == LOCAL_FAMILY)
    if not revise and report_mode == "abstractive" and (weak or none_backed):
        # said as it was: a draft with no factual sentence (markup, a refusal) has no support to give,
        # and unsupported_sentences is named only when it holds the draft's
        checked = (f"support {grounding.support or 0:.2f}, {grounding.supported} of {grounding.factual} factual sentences"
                   if grounding.factual else "no factual sentence in it")
        where = " (the draft's sentences are in unsupported_sentences)" if unsupported else ""
        warnings.append(f"the written draft failed the grounding check ({checked}); the report quotes the sources"
                        f" instead{where}")
        unsupported = [{**u, "draft": "abstractive (replaced)"} for u in unsupported]
        invalid = grounding.invalid
        grounding, more, _ = _screen(extractive(state), state)
        grounding.invalid = invalid + grounding.invalid
        unsupported += grounding.unsupported
        repeats += more
        report_mode = "extractive"
    body = NOTHING_SUPPORTED if _nothing_left(grounding) else grounding.report
    read = state.get("passages", {})
    result = check_citations(body, sources, support_texts(state), pages=cited_pages(grounding.evidence.values()),
                             quotes=cited_quotes(grounding.evidence.values(), read))
    for citation in result.citations:
        evidence = grounding.evidence.get(normalise(citation["claim"]))
        if evidence:
            citation["passage"] = linked(evidence, sources, read)  # ``link``: a web page opened at it
    removed = grounding.invalid + result.removed
    # a report that states nothing (the sources do not answer the question) has nothing to cite
    warnings += _warnings(len(sources), bool(result.citations) or not grounding.factual, removed, unsupported, repeats)
    missing = unmentioned(state["question"], source_texts(sources, state.get("passages", {})))
    if missing:  # the question's subject: a report from these sources may answer another question
        warnings.append(f"{missing_line(missing, sentence=False)}: the report may not answer the question")
    summary = _grounding_field(first, reviewed, grounding, settlement)
    detail = (f"{report_mode}: {grounding.supported} of {grounding.factual} factual sentences supported"
              f" ({summary['settled_by_reviewer']} of {summary['undecided']} undecided settled by the reviewer);"
              f" {len(unsupported)} unsupported and {len(repeats)} repeated removed; {len(removed)} invalid citations removed")
    if dropped_section:
        detail += "; the model's own source list was replaced by the checked one"
    return {"report": result.report, "citations": result.citations, "removed_citations": removed,
            "unsupported_sentences": unsupported, "support": grounding.support, "repeats_removed": repeats,
            "report_mode": report_mode, "warnings": warnings, "grounding": summary, "revise_unbacked": revise,
            "trace": settlement.trace + [node_step("check", started, detail)]}


def support_texts(state: Mapping[str, Any]) -> dict[int, str]:
    """Source id -> what a claim citing it is scored against (``citations[].support``): what the
    writer saw of it and every passage read from it. An extractive report quotes passages the
    writer's excerpt left out, and a sentence quoted word for word scored 0.07."""
    read = state.get("passages", {})
    return {int(s["id"]): " ".join([state.get("excerpts", {}).get(str(s["id"])) or s.get("snippet", ""),
                                    *(str(p.get("text") or "") for p in read.get(str(s["id"]), ()))])
            for s in state["sources"]}


def _warnings(sources: int, cited: bool, removed: list[Any], unsupported: list[Any], repeats: list[Any]) -> list[str]:
    warnings = []
    if not cited:
        warnings.append(f"the report cites none of the {sources} sources; treat it as unsupported")
    if removed:
        warnings.append(f"{len(removed)} citation(s) named sources that were never retrieved and were removed")
    if unsupported:
        warnings.append(f"{len(unsupported)} sentence(s) that no cited passage supports were removed")
    if repeats:
        warnings.append(f"{len(repeats)} repeated sentence(s) or line(s) were removed")
    return warnings


def _review_node(deps: ResearchDeps) -> Node:
    async def review(state: ResearchState) -> dict[str, Any]:
        started = time.perf_counter()
        reviewer = state.get("reviewer")
        if state.get("revise_unbacked"):  # a model reviewing the notice that replaced it would tell the writer less
            issues = _check_issues(state)
            detail = f"nothing in the draft survived the check: its {len(issues) - 1} reason(s) go to the writer (no model called)"
            return {"review": {"approved": False, "status": "check", "issues": issues, "reason": detail},
                    "trace": [node_step("review", started, detail)]}
        if state.get("draft_stands"):  # the same text as the review before: it stands
            detail = "the draft stands: its review stands (no model called)"
            return {"review": state.get("review"), "trace": [node_step("review", started, detail, "skipped")]}
        why = ""
        if not reviewer:
            why = "no reviewer configured for research"
        elif not state["sources"]:
            why = "nothing to review without sources"
        elif state.get("report_mode") == "extractive":
            why = "extractive report: the sources' own words, held against them by the check"
        if why:
            return {"review": {"approved": None, "status": "skipped", "reason": why},
                    "trace": [node_step("review", started, why, "skipped")]}
        emit("review", f"reviewing with {reviewer}", stage_at("review", revision=state.get("revisions", 0)))
        writer = state.get("writer_family")
        config = LLMConfig(tier=state.get("tier"), prefer=reviewer,  # type: ignore[arg-type]
                           avoid=_avoided(deps.llm, reviewer, writer), json_schema=prompts.REVIEW_SCHEMA,
                           temperature=0.0, step="review")
        messages = prompts.review_messages(state["question"], state["report"], state["sources"], state.get("excerpts", {}))
        response, trace, error = await ask(deps.llm, messages, config)
        verdict = _verdict(response.text) if response else None
        if response is None or verdict is None:
            status, why = ("unavailable", error) if response is None else ("unusable", "the reviewer's answer held no valid JSON verdict")
            return {"review": {"approved": None, "status": status, "error": why[:300]},
                    "trace": trace + [node_step("review", started, why, "error")]}
        verdict |= {"status": "done", "reviewer": response.model}
        detail = f"{'approved' if verdict['approved'] else 'changes requested'} by {response.model}"
        if writer and response.provider == writer:  # no model of another family answered: said, as delegate says it
            verdict["self_review"] = True
            verdict["note"] = (f"reviewed by {response.model}, of the writer's own family ({writer}): no model of"
                               " another family answered, so this is no independent review")
            detail += f" (a self-review: {writer} reviewed {writer}'s report)"
        return {"review": verdict, "trace": trace + [node_step("review", started, detail)]}

    return review


def _avoided(llm: Any, reviewer: str | None, writer: str | None) -> str | None:
    """The family the review call puts last: the writer's, where a remote model of another family
    would answer first now (DeepSeek reviewed its own report with Gemini's key set); not where only
    the local model would, whose review of a remote model's report would send it back to be
    rewritten on a 135M model's say (the writer's own review, said to be one, is kept then), nor
    where config names the writer's family as the reviewer."""
    if not writer or writer == LOCAL_FAMILY:
        return writer
    family_of = getattr(llm, "family_of", lambda name: None)
    if reviewer == writer or family_of(reviewer or "") == writer:  # config names the writer's family: as asked
        return None
    family = first_family(llm, LLMConfig(prefer=reviewer, avoid=writer, step="review"))
    if family == UNKNOWN:
        return writer
    return writer if family not in (None, LOCAL_FAMILY, writer) else None


#: the check's reasons passed on to the writer as a review's issues: the rule, then the first removals
CHECK_RULE = ("Nothing in your report was backed by the passage it cites: cite a source [n] for every factual"
              " sentence, and state only what that source's passage says, in its words where you can.")
CHECK_ISSUES = 4


def _check_issues(state: ResearchState) -> list[str]:
    removed = [u for u in state.get("unsupported_sentences", []) if u.get("sentence")]
    return [CHECK_RULE] + [f"removed: \"{u['sentence'][:160]}\", citing {_ids(u.get('source_ids'))}: {u['reason']}"
                           for u in removed[:CHECK_ISSUES]]


def _ids(source_ids: list[int] | None) -> str:
    return ", ".join(f"[{i}]" for i in source_ids) if source_ids else "no source"


def writing_nodes(deps: ResearchDeps) -> dict[str, Node]:
    """write, check and review, closed over their dependencies."""
    return {"write": write_node(deps), "check": _check_node(deps), "review": _review_node(deps)}


def _verdict(text: str) -> dict[str, Any] | None:
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        data = json.loads(match.group(0), strict=False) if match else None
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("approved"), bool):
        return None
    issues = data.get("issues")
    return {"approved": data["approved"], "issues": [str(i)[:300] for i in issues][:5] if isinstance(issues, list) else []}


async def after_review(state: ResearchState) -> str:
    """Revise when the reviewer asked for changes and the revision budget allows it."""
    verdict = state.get("review") or {}
    if verdict.get("approved") is False and verdict.get("issues") and state.get("revisions", 0) < state.get("max_revisions", 0):
        return "write"
    return "done"
