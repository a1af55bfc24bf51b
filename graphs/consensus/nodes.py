"""Nodes of the consensus graph: ``ask`` (one branch per model, all at once) and ``synthesize``.

Each branch goes through the ``LLMProvider`` (the router: its fallbacks and circuits, the job's
budget) and catches its own failure, so one model that fails is reported, not fatal.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.errors import AllProvidersFailed, BudgetExceeded, ProviderError, SwarmError
from graphs.consensus import prompts
from graphs.consensus.state import AskTask, ConsensusState, Participant
from graphs.cuts import cut_note, cut_reason
from graphs.progress import emit, model_progress
from providers.base import LLMConfig, LLMProvider, TraceStep, listen_to_attempts

Node = Callable[[Any], Awaitable[dict[str, Any]]]

#: the synthesis prompt's own markup (``prompts.synthesis_messages``) in an answer: the model echoed it
_ECHOED_PROMPT = re.compile(r"</?question>|<answer model=|</answer>")
#: a tag named after what the model was asked to write, around or after its synthesis: not its text
_OWN_TAGS = re.compile(r"</?synthesis>", re.IGNORECASE)


#: words of the position prompt (system prompt and stances): a position made of these repeats it
_PROMPT_WORDS = frozenset(re.findall(r"[a-z]+", " ".join([prompts.POSITION_SYSTEM, *prompts.STANCES.values()]).lower()))
#: an answer of ECHO_MIN_WORDS to ECHO_MAX_WORDS words, every one the prompt's, is the prompt
#: echoed, not a position; a shorter one may be a real one-word stance ("Against.", "Take the risk.")
ECHO_MIN_WORDS, ECHO_MAX_WORDS = 6, 40


def echoes_prompt(text: str) -> bool:
    """Whether a position only repeats its prompt's instruction ("A clear position, the reasons for
    it and a main risk or caveat."): every word of it the prompt's, and as long as an instruction
    (the keyless model did so in 2 of 3 panels, and the answer stood as a position)."""
    words = re.findall(r"[a-z]+", text.lower())
    return ECHO_MIN_WORDS <= len(words) <= ECHO_MAX_WORDS and set(words) <= _PROMPT_WORDS


#: a sentence or clause of a position, with the marks that end it
_CLAUSE = re.compile(r"[^.!?:;\n]*(?:[.!?:;]+|\n+|\Z)")
#: the prompt's texts, each as a run of its words: an echoed clause is a stretch of one of them
_PROMPT_RUNS = tuple(" ".join(re.findall(r"[a-z]+", t.lower())) for t in (prompts.POSITION_SYSTEM, *prompts.STANCES.values()))
#: a clause shorter than this is never taken for an echo: "Against.", "For it." are stances
ECHO_CLAUSE_WORDS = 3


def _echoed(clause: str) -> int:
    """The words of ``clause`` when it repeats the prompt, else 0: a stretch of it word for word
    (ECHO_CLAUSE_WORDS or more: "the reasons for it"), or ECHO_MIN_WORDS or more of its words in
    any order ("the reasons for it and a main risk or caveat"); "Against it" is a stance."""
    words = re.findall(r"[a-z]+", clause.lower())
    if len(words) < ECHO_CLAUSE_WORDS:
        return 0
    run = " ".join(words)
    if any(f" {run} " in f" {text} " for text in _PROMPT_RUNS):
        return len(words)
    return len(words) if len(words) >= ECHO_MIN_WORDS and set(words) <= _PROMPT_WORDS else 0


def position_text(text: str) -> str | None:
    """A position's text without an opening that repeats its prompt's instruction ("A clear
    position, the reasons for it. Rivers ...": whole clauses, each a stretch of the prompt word for
    word, ECHO_MIN_WORDS or more in all; a stance is never one, "Against."); ``None`` when the answer
    is nothing but the instruction (``echoes_prompt``, or an echo with nothing after it)."""
    if echoes_prompt(text):
        return None
    end = words = 0
    for clause in _CLAUSE.finditer(text):
        said = _echoed(clause.group(0))
        if not clause.group(0) or not said:
            break
        end, words = clause.end(), words + said
    if words < ECHO_MIN_WORDS:
        return text.strip()
    rest = text[end:].strip()
    return rest if re.search(r"\w", rest) else None


def _node_step(name: str, started: float, detail: str, outcome: str = "ok") -> dict[str, Any]:
    return TraceStep(step=name, kind="node", provider="graph", latency_ms=(time.perf_counter() - started) * 1000,
                     outcome=outcome, detail=detail).model_dump()  # type: ignore[arg-type]


def _attempts(exc: Exception) -> list[dict[str, Any]]:
    """The attempts ``exc`` carries: a chain's, or the billed ones before a fallback the budget refused."""
    carried = [*(getattr(exc, "attempts", None) or []), *(getattr(exc, "billed", None) or [])]
    return [a.model_dump() if hasattr(a, "model_dump") else dict(a) for a in carried]


def panel(answers: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the positions, the failed) of a run's answers, in the order the models were asked.

    A stand-in (the asked model failed and its chain's fallback answered) counts as a position
    only when no answer of the same model and stance is on the panel already: otherwise one
    model's view would read as two agreeing ones, and the asked model's failure would be lost.
    """
    ordered = sorted(answers, key=lambda a: a["index"])
    seen = {(a["model"], a.get("stance")) for a in ordered if a["status"] == "answered"}
    first_asked: dict[tuple[Any, Any], str] = {}  # (model, stance) -> the participant it answered as itself for
    positions: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for answer in ordered:
        if answer["status"] == "failed":
            failed.append(_as_foreseen(answer, seen))
            continue
        if answer["status"] == "answered":  # a model named by its name and by its family: one view, not two
            key = (answer["model"], answer.get("stance"))
            if key in first_asked:
                failed.append({"index": answer["index"], "asked": answer["asked"], "stance": answer.get("stance"),
                               "status": "failed", "error_type": "AlreadyOnPanel",
                               "error": f"{answer['asked']} was answered by {answer['model']}, on the panel already"
                                        f" (asked as {first_asked[key]}), so its answer is not counted twice"})
                continue
            first_asked[key] = answer["asked"]
        if answer["status"] == "stand_in":
            key = (answer["model"], answer.get("stance"))
            if key in seen:
                why = f" ({answer['asked_error']})" if answer.get("asked_error") else ""
                failed.append({"index": answer["index"], "asked": answer["asked"], "stance": answer.get("stance"),
                               "status": "failed", "error_type": "StandInAlreadyOnPanel",
                               "error": f"{answer['asked']} gave no answer{why}; its fallback {answer['model']} is on"
                                        " the panel already, so its answer is not counted twice"})
                continue
            seen.add(key)
        positions.append(answer)
    return positions, failed


def already_on_panel(llm: LLMProvider, task: AskTask) -> str | None:
    """The model that would stand in for this task's participant when it is on the panel already
    (``panel``'s rule, foreseen): answering as itself for another participant, or standing in for
    (or, named by its family, answering as itself after) an earlier one, with the same stance.
    ``None``: ask. Foreseen by the router's ``first_callable`` (no key missing, circuit not open);
    without one, always ask.

    Keyless, every chain ends at the local model: three models asked meant three answers of it,
    two of them thrown away (38 s of CPU for a 27 s call)."""
    first_callable = getattr(llm, "first_callable", None)
    who, panel_ = task["participant"], task.get("panel") or []
    if first_callable is None or len(panel_) < 2:
        return None

    def first(participant: Participant) -> str | None:
        return first_callable(LLMConfig(tier=task["tier"], prefer=participant["model"], step="ask"))  # type: ignore[arg-type]

    model = first(who)
    if model is None:
        return None
    itself = model in who["accepts"]  # answering as itself: on the panel already only as an earlier one's own
    for index, other in enumerate(panel_):
        if index == task["index"] or other["stance"] != who["stance"]:
            continue
        theirs = first(other)
        earlier_own = index < task["index"] and model in other["accepts"]
        if theirs == model and (earlier_own if itself else (model in other["accepts"] or index < task["index"])):
            return model
    return None


def _as_foreseen(answer: dict[str, Any], seen: set[tuple[Any, Any]]) -> dict[str, Any]:
    """A participant not asked because ``foreseen`` would answer for it (``already_on_panel``),
    said truly when that model, in the end, gave no answer with its stance."""
    foreseen = answer.get("foreseen")
    if foreseen is None or (foreseen, answer.get("stance")) in seen:
        return answer
    whose = "" if answer.get("error_type") == "AlreadyOnPanel" else "its fallback "
    return {**answer, "error": f"{answer['asked']} was not asked: {whose}{foreseen} was to answer for it"
                              " on the panel, and gave no answer"}


def make_nodes(llm: LLMProvider) -> dict[str, Node]:
    """The graph's nodes, closed over the LLM provider they use."""

    async def ask(task: AskTask) -> dict[str, Any]:
        started = time.perf_counter()
        who = task["participant"]
        stance = who["stance"]
        repeated = already_on_panel(llm, task)
        if repeated is not None:  # not asked: its stand-in's answer is on the panel already
            passed_over = getattr(llm, "passed_over", None)
            passed = passed_over(LLMConfig(tier=task["tier"], prefer=who["model"], step="ask")) if passed_over else []  # type: ignore[arg-type]
            # its own models' reasons (the rest of its chain is the fallbacks': their keys are said elsewhere)
            why = "; ".join([p for p in passed if p.split(":", 1)[0] in who["accepts"]] or passed)
            itself = repeated in who["accepts"]  # named by its family and by its name: the same model
            error = (f"{who['model']} would be answered by {repeated}, on the panel already" if itself else
                     f"{who['model']} cannot be asked here{f' ({why})' if why else ''}; its fallback {repeated}"
                     " is on the panel already") + ", so it was not asked the same question twice"
            emit("ask", f"{who['model']}: not asked ({repeated} answers for it already)")
            failed = {"index": task["index"], "asked": who["model"], "stance": stance, "status": "failed",
                      "error_type": "AlreadyOnPanel" if itself else "StandInAlreadyOnPanel", "error": error,
                      "foreseen": repeated}
            return {"answers": [failed], "trace": [_node_step("ask", started, error, "skipped")]}
        config = LLMConfig(tier=task["tier"], prefer=who["model"], step="ask")  # type: ignore[arg-type]
        verb = f"asking ({stance} stance)" if stance else "asking"
        try:
            with listen_to_attempts(model_progress("ask", verb)):
                response = await llm.complete(prompts.position_messages(task["question"], stance), config)
        except (AllProvidersFailed, BudgetExceeded) as exc:
            emit("ask", f"{who['model']} gave no answer ({type(exc).__name__})")
            failed = {"index": task["index"], "asked": who["model"], "stance": stance, "status": "failed",
                      "error_type": type(exc).__name__, "error": str(exc)[:500]}
            step = _node_step("ask", started, f"{who['model']}: no answer ({type(exc).__name__})", "error")
            return {"answers": [failed], "trace": _attempts(exc) + [step]}
        text = position_text(response.text)
        if text is None:
            error = f"{response.model} echoed the prompt's instruction instead of a position"
            emit("ask", f"{who['model']} gave no answer ({error})")
            failed = {"index": task["index"], "asked": who["model"], "stance": stance, "status": "failed",
                      "error_type": "EchoedPrompt", "error": error}
            return {"answers": [failed], "trace": [a.model_dump() for a in response.attempts]
                    + [_node_step("ask", started, error, "error")]}
        stand_in = response.model not in who["accepts"]
        # why the asked model gave no answer: the panel's "not counted twice" said only that it gave none
        own_failures = [f"{a.model}: {a.error_class or a.outcome} {a.detail or ''}".strip() for a in response.attempts
                        if stand_in and a.model in who["accepts"] and a.outcome != "ok"]
        emit("ask", f"{response.model} answered" + (f" in place of {who['model']}" if stand_in else ""))
        answer = {
            "index": task["index"], "asked": who["model"], "model": response.model, "stance": stance,
            "status": "stand_in" if stand_in else "answered", "text": text,
            **({"asked_error": "; ".join(own_failures)[:500]} if own_failures else {}),
            "latency_ms": round(response.latency_ms, 2), "input_tokens": response.input_tokens,
            "output_tokens": response.output_tokens, "cost_usd": response.cost_usd,
            # ended early: by its token limit (length), or where it began repeating itself (loop)
            **({"cut": True, "cut_reason": reason} if (reason := cut_reason(response.finish_reason)) else {}),
        }
        detail = (f"{response.model} answered" + (f" in place of {who['model']}" if stand_in else "")
                  + cut_note(response.finish_reason)
                  + ("; its opening, the prompt's instruction repeated, is left out" if text != response.text.strip() else ""))
        return {"answers": [answer], "trace": [a.model_dump() for a in response.attempts] + [_node_step("ask", started, detail)]}

    async def synthesize(state: ConsensusState) -> dict[str, Any]:
        started = time.perf_counter()
        answered, failed = panel(state.get("answers", []))
        if not answered:
            # who was asked and why none answered: the output and the trace say it, not only the error
            partial = {"partial": True, "stopped_at": "synthesize", "positions": [], "failed": failed}
            asked = [f for f in failed if not f.get("foreseen")]  # the ones not asked ran out of nothing
            stop: SwarmError
            if asked and all(f["error_type"] == "BudgetExceeded" for f in asked):  # no model was even asked
                stop = BudgetExceeded(failed[0]["error"], partial=partial)
            elif asked and all(f["error_type"] == "EchoedPrompt" for f in asked):  # they answered, with nothing
                stop = ProviderError("llm", "every model echoed the prompt's instruction instead of a position: "
                                     + ", ".join(f["asked"] for f in asked))
                stop.partial = partial
            else:
                attempts = [s for s in state.get("trace", []) if s.get("kind") != "node"]
                stop = AllProvidersFailed("llm", attempts, partial=partial)
            # the ask steps ("deepseek not asked", "claude: no answer") were dropped with the attempts kept;
            # a chain's attempts are its error's own, any other stop keeps them here (billed before a
            # fallback the budget refused)
            chain = isinstance(stop, AllProvidersFailed)
            stop.trace = [s for s in state.get("trace", []) if s.get("kind") == "node" or not chain]  # type: ignore[union-attr]
            raise stop
        config = LLMConfig(tier=state.get("tier"), prefer=state["synthesizer"], step="synthesize")  # type: ignore[arg-type]
        try:
            with listen_to_attempts(model_progress("synthesize", f"weighing {len(answered)} answer{'s' if len(answered) != 1 else ''}")):
                response = await llm.complete(prompts.synthesis_messages(state["question"], answered, failed), config)
        except (AllProvidersFailed, BudgetExceeded) as exc:
            # the positions stand; the missing synthesis is said plainly, every attempt named, in
            # result (``synthesis_error`` and a warning: action.py) and trace
            return {"synthesis": {"status": "unavailable", "error": exc.to_dict()["message"]},
                    "trace": _attempts(exc) + [_node_step("synthesize", started, "no synthesizer answered", "error")]}
        text = _OWN_TAGS.sub("", response.text).strip()  # "</synthesis>" a small model closes its answer with
        if _ECHOED_PROMPT.search(text):  # a small model that copies its input is no synthesis
            error = f"{response.model} echoed the prompt's markup instead of a synthesis"
            return {"synthesis": {"status": "unavailable", "model": response.model, "error": error},
                    "trace": [a.model_dump() for a in response.attempts]
                    + [_node_step("synthesize", started, f"{error}; the positions stand", "error")]}
        emit("synthesize", f"synthesized by {response.model}")
        synthesis: dict[str, Any] = {"status": "done", "model": response.model, "text": text,
                                     "cost_usd": response.cost_usd,
                                     # ended early (its token limit, or where it began repeating itself)
                                     **({"cut_reason": reason} if (reason := cut_reason(response.finish_reason)) else {})}
        return {"synthesis": synthesis, "trace": [a.model_dump() for a in response.attempts]
                + [_node_step("synthesize", started, f"synthesized by {response.model}{cut_note(response.finish_reason)}")]}

    return {"ask": ask, "synthesize": synthesize}
