"""The write node of the research graph: the report drafted abstractive (a model writes it from the
passages) or extractive (the passages' own words, no model).

With ``mode: auto`` the local model never writes it: when the router would start the writer's
chain there, the report is extractive and no model is called; when the writers ahead of it fail,
the chain stops before it (``writer_chain``). Either way, where the writers failed (not a keyless
setup, where the local model is the only one), ``write_failure`` names them and the check turns it
into a warning. A revision that no writer but the local model could write leaves the checked draft.
"""

from __future__ import annotations

import time
from typing import Any

from graphs.cuts import cut_note, cut_warning
from graphs.progress import emit
from graphs.research import prompts
from graphs.research.extractive import PER_QUERY, extractive_report
from graphs.research.nodes import LOCAL_FAMILY, UNKNOWN, Node, ResearchDeps, first_family, node_step, stage_at
from graphs.research.state import ResearchState
from graphs.research.writer_chain import QUOTED, ask_writer, failed_writers, unanswered
from providers.base import LLMConfig

#: ``LOCAL_FAMILY`` (``nodes``): the bundled local model's family; in auto mode it never writes the report


def no_sources_report(state: ResearchState) -> str:
    attempts = [s for s in state.get("trace", []) if s.get("kind") == "search"]
    lines = [f"- {s['provider']}: {s['outcome']}{' - ' + s['detail'] if s.get('detail') else ''}" for s in attempts]
    listed = "\n".join(dict.fromkeys(lines)) or "- no search backend was tried"
    return (
        f"## No sources found\n\nNo search backend returned anything for: {state['question']}\n\n"
        f"Nothing is cited, because nothing was retrieved. Search attempts:\n\n{listed}\n"
    )


def extractive(state: ResearchState) -> str:
    searched, *planned = state.get("queries") or [state["question"]]  # the first query is the question itself
    question = state["question"]
    # a follow-up searched with its earlier question's words is matched on them too
    about = searched if searched != " ".join(question.split())[:len(searched)] else None
    return extractive_report(
        question, planned, state["sources"], state.get("passages", {}), PER_QUERY.get(state["depth"], PER_QUERY["quick"]),
        about=about,
    )


def _config(state: ResearchState, revision: int) -> LLMConfig:
    return LLMConfig(tier=state.get("tier"), prefer=state.get("primary"),  # type: ignore[arg-type]
                     step="write" if not revision else "revise")


def write_node(deps: ResearchDeps) -> Node:
    async def write(state: ResearchState) -> dict[str, Any]:
        started = time.perf_counter()
        revision = state.get("revisions", 0) + (1 if state.get("review") else 0)
        base = {"written_by": None, "revisions": revision, "report_mode": "extractive",
                "writer_family": state.get("planned_by"), "write_failure": None, "writer_note": None,
                "draft_stands": False}
        if not state["sources"]:
            emit("write", "no sources were found; nothing to cite", stage_at("write", revision=revision))
            detail = "no sources: wrote the no-sources report without a model"
            return {**base, "draft": no_sources_report(state), "report_mode": None,
                    "trace": [node_step("write", started, detail, "error")]}
        mode = state.get("mode", "auto")
        config = _config(state, revision)
        if mode == "extractive":
            emit("write", "quoting the best passages for each sub-question", stage_at("write", revision=revision))
            return {**base, "draft": extractive(state),
                    "trace": [node_step("write", started, "extractive report (as asked); no model called")]}
        if mode == "auto" and _local_writes(deps.llm, state):
            emit("write", "quoting the best passages for each sub-question", stage_at("write", revision=revision))
            detail = "the writer would be the local model; no model called"
            return _local_left(state, base, started, [], failed_writers(deps.llm, config), detail)
        emit("write", f"writing with {state.get('primary') or 'the default model'}" + (f" (revision {revision})" if revision else ""),
             stage_at("write", revision=revision))
        messages = prompts.write_messages(state["question"], state["sources"], state.get("excerpts", {}), state.get("review"))
        response, trace, error, stopped = await ask_writer(deps.llm, messages, config, LOCAL_FAMILY if mode == "auto" else None)
        if stopped:
            failed = unanswered(trace[:-1])
            return _local_left(state, base, started, trace, failed, f"{failed + '; ' if failed else ''}{stopped} not asked")
        if response is None or not response.text.strip():
            why = error or f"{response.model if response else 'the model'} answered with nothing"
            return {**base, "draft": extractive(state), "write_failure": why,
                    "trace": trace + [node_step("write", started, f"writer failed: {why}; extractive report", "error")]}
        failed = _failed(trace)
        if mode == "auto" and response.provider == LOCAL_FAMILY:  # a provider that cannot be stopped before it
            return _local_left(state, base, started, trace, failed, f"{response.model} (local) answered")
        # the local model standing in for a writer that failed: the report says who wrote it
        notes = [f"written by the local model {response.model}: {failed}" if failed and response.provider == LOCAL_FAMILY
                 else None,
                 # a draft cut at its token limit: its unfinished end reads as "unsupported" below, said why here
                 cut_warning("the written draft", response.finish_reason)]
        return {**base, "draft": response.text.strip(), "written_by": response.model, "report_mode": "abstractive",
                "writer_family": response.provider, "writer_note": "; ".join(n for n in notes if n) or None,
                "trace": trace + [node_step("write", started, f"written by {response.model}{cut_note(response.finish_reason)}")]}

    return write


def _local_left(state: ResearchState, base: dict[str, Any], started: float, trace: list[dict[str, Any]],
                failed: str, detail: str) -> dict[str, Any]:
    """Auto mode, where no writer but the local model would write (``failed``: the writers that
    failed, "" in a keyless setup): a revision leaves the checked draft; else the sources are quoted."""
    revision = base["revisions"]
    if revision and state.get("written_by") and state.get("report_mode") == "abstractive":
        # the draft to revise was written and checked: it stands. Its check and review stand too:
        # neither is paid for again on the same text, and no further revision is tried
        note = f"the revision could not be written ({failed or 'only the local model could write it'}); the draft stands"
        return {**base, "draft": state["draft"], "written_by": state["written_by"], "report_mode": "abstractive",
                "writer_family": state.get("writer_family"), "writer_note": note, "draft_stands": True,
                "revisions": state.get("max_revisions", revision),
                "trace": trace + [node_step("write", started, f"{detail}; the earlier draft stands", "error")]}
    # writers that failed (not a keyless setup, where the local model is the only one): said as a failure
    return {**base, "draft": extractive(state), "write_failure": failed or None,
            "trace": trace + [node_step("write", started, f"{detail}; {QUOTED}",
                                        "error" if failed else "ok")]}


def _failed(trace: list[dict[str, Any]]) -> str:
    """The models of a call's attempts that failed, each with its error class: "" when none did
    (skipped ones, a key unset, are the setup, not a failure)."""
    return "; ".join(f"{s.get('model') or s.get('provider')}: {s.get('error_class') or 'failed'}"
                     for s in trace if s.get("outcome") == "error")


def _local_writes(llm: Any, state: ResearchState) -> bool:
    """Whether the write call would be answered by the local model: the router would start the
    writer's chain there now (whoever planned: a writer's circuit open since), or, where it cannot
    tell (no router, or a half-open circuit's probe), the local model planned. A plan that fell to
    the local model over one failed call (DeepSeek's 503, its circuit still closed) made the whole
    report extractive, "the writer would be the local model" said of a writer never asked."""
    family = first_family(llm, LLMConfig(tier=state.get("tier"), prefer=state.get("primary"), step="write"))  # type: ignore[arg-type]
    return family == LOCAL_FAMILY or (family in (UNKNOWN, None) and state.get("planned_by") == LOCAL_FAMILY)
