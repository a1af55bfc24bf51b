"""What a model reads of a tool's answer: the result in words, not its JSON.

Every action result is structured content (all of it: the full trace, every field) plus text. The
text was that JSON pretty-printed: for an upscale, 50 lines of trace fields before the picture; for
a delegated task, the answer as one escaped string. A chat shows the text and a model reads it, so
it now says what a person would: the answer (or the images, or the positions and synthesis), who
made it, one line per step of the trace, the totals, and the ids a next call needs (``job_id``,
``thread_id``, an image's ``key``). A research report has its own text (``reports.research_blocks``);
a failed job, its own (``results.failure_text``); a job still running, ``handle_text``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from mcp_server.outputs import ConsensusOutput, DelegateOutput, ImageOutput, JobOutcome, TraceStepOut

#: steps of the trace a text lists one by one (the structured result has all of them)
TEXT_TRACE_STEPS = 12
#: a review's issues a text lists one by one
REVIEW_ISSUES = 5


#: characters of a failed step's detail a text quotes (why a model failed, a graph step fell back)
DETAIL_CHARS = 160
#: what ends a text ``clip`` shortened
ELLIPSIS = "\u2026"


def clip(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: whole, or cut at its last word end that keeps half
    of them, with an ellipsis (a trace detail ended "waited for a C..."); inside a word only where
    the cut would drop more than half of them (one long word: a URL)."""
    if len(text) <= limit:
        return text
    head = text[: limit - len(ELLIPSIS) + 1]  # one more: a cut that falls on a space ends a word
    space = re.search(r"\s\S*\Z", head)
    kept = head[: space.start()] if space and space.start() >= limit // 2 else head[:-1]
    return kept.rstrip(" \t\n,;:(-\u2013\u2014") + ELLIPSIS


def step_line(step: TraceStepOut) -> str:
    """``draft llm qwen2.5 ok 120.0 ms``: where, who, how it went, how long (and, for a graph
    step that did not go as planned, or a provider call that failed, why: its detail; for an image
    step, what ran)."""
    parts = [step.step, step.kind, step.model or step.provider, step.outcome, step.error_class or "", f"{step.latency_ms} ms"]
    line = " ".join(p for p in parts if p)
    # an image step's detail says what ran (precision, backend, tiles): no other line of the text does
    if step.detail and (step.outcome not in ("ok", "skipped") or step.kind == "image"):
        line += f" ({clip(step.detail, DETAIL_CHARS)})"
    return line


def _worth_a_line(step: TraceStepOut) -> bool:
    """A provider call, or a graph step that did not go as planned (one that did is the frame
    around the calls: its time is in the totals, its row in the structured trace)."""
    return step.outcome != "skipped" if step.kind != "node" else step.outcome not in ("ok", "skipped")


def trace_line(steps: list[TraceStepOut]) -> str:
    """The provider calls and the graph steps that did not go as planned, the first
    ``TEXT_TRACE_STEPS`` of them on one line, how many more there are, and the providers skipped
    (an unset key: three a call on a keyless setup; an open circuit)."""
    ran = [s for s in steps if _worth_a_line(s)]
    shown = "; ".join(step_line(s) for s in ran[:TEXT_TRACE_STEPS])
    more = f"; {len(ran) - TEXT_TRACE_STEPS} more steps" if len(ran) > TEXT_TRACE_STEPS else ""
    skipped = sorted({s.model or s.provider for s in steps if s.outcome == "skipped" and s.kind != "node"})
    said = f"skipped: {', '.join(skipped)}" if skipped else ""
    return "trace: " + "; ".join(part for part in (f"{shown}{more}" if ran else "", said) if part)


def remote_line(steps: list[TraceStepOut]) -> list[str]:
    """``["ran on RunPod endpoint ep: job ... on worker"]`` for a job a RunPod worker ran, else
    ``[]``: its step is a node's, which the trace line leaves out when it went well."""
    remote = next((s for s in steps if s.step == "runpod" and s.provider == "runpod" and s.outcome == "ok"), None)
    return [f"ran on RunPod endpoint {remote.model}: {remote.detail}"] if remote is not None else []


def totals_line(totals: dict[str, Any], steps: list[TraceStepOut]) -> str:
    """Tokens, cost, provider calls, the time spent in providers and the job's own time."""
    cost = totals.get("cost_usd")
    latency = round(sum(s.latency_ms for s in steps if s.kind != "node"), 1)
    dispatch = next((s for s in reversed(steps) if s.step == "dispatch" and s.kind == "node"), None)
    line = (f"{totals.get('input_tokens', 0)} in / {totals.get('output_tokens', 0)} out tokens, "
            f"cost {'unknown' if cost is None else f'${cost:.6f}'}, {totals.get('provider_calls', len(steps))} "
            f"provider calls, {latency} ms in providers")
    if dispatch is None:
        return line
    job = dispatch.latency_ms
    if (dispatch.detail or "").startswith(("resumed", "replayed")):  # the steps before are an earlier run's:
        # "8332 ms in providers (some side by side), 4663 ms in all" counted them against this run alone
        return f"{line} (its earlier run's too), {job} ms in this run"
    # calls made side by side (a consensus panel) add up to more than the job took
    return f"{line}{' (some side by side)' if latency > job else ''}, {job} ms in all"


def handle_text(job_id: str, message: str | None, progress: dict[str, Any] | None,
                steps: list[TraceStepOut], thread_id: str | None = None) -> str:
    """A job still running: what to call next, its last progress and the steps it has finished."""
    lines = [message or f'job {job_id} is still running; call job_result(job_id="{job_id}") to wait for it']
    said, share = _progress(progress)
    if said or share:
        lines.append(f"progress: {said or ''}{f' ({share})' if share else ''}".rstrip())
    if finished := trace_line(steps).removeprefix("trace: "):  # only graph steps that went well: nothing to name
        lines.append(f"finished so far: {finished}")
    lines.append(f"job_id: {job_id}" + (f"; thread_id: {thread_id}" if thread_id else ""))
    return "\n".join(lines)


def result_text(output: JobOutcome) -> str:
    """The text of a delegate, consensus or image result (running or finished)."""
    thread = output.thread_id if isinstance(output, DelegateOutput) else None
    if output.status == "IN_PROGRESS":
        return handle_text(output.job_id, output.message, output.progress, output.trace, thread)
    if isinstance(output, DelegateOutput):
        body = _delegate(output)
    elif isinstance(output, ConsensusOutput):
        body = _consensus(output)
    elif isinstance(output, ImageOutput):
        body = _image(output)
    else:
        body = ""
    said = footer(output, thread)
    return f"{body}\n\n---\n{said}" if body else said


def footer(output: JobOutcome, thread_id: str | None = None) -> str:
    """The trace, the totals and the ids a next call needs (the job's, and its thread's)."""
    lines = [*remote_line(output.trace), *([trace_line(output.trace)] if output.trace else [])]
    lines.append(f"totals: {totals_line(output.totals, output.trace)}")
    named = [f"job_id: {output.job_id}", *([f"thread_id: {thread_id}"] if thread_id else [])]
    lines.append("; ".join(named) + "; every field and the full trace: the structured result")
    return "\n".join(lines)


def _delegate(output: DelegateOutput) -> str:
    lines = [output.text.rstrip() or "(the answer is empty)", ""]
    who = f"written by {output.model}" if output.model else "written"
    revised = f" after {output.revisions} revision(s)" if output.revisions else ""
    lines.append(f"{who}{revised}; {_review(output.review)}")
    review = output.review or {}
    if review.get("note"):
        lines.append(f"note: {review['note']}")
    issues = [str(i) for i in review.get("issues") or []]
    lines += [f"- {issue}" for issue in issues[:REVIEW_ISSUES]]
    if len(issues) > REVIEW_ISSUES:
        lines.append(f"- ... {len(issues) - REVIEW_ISSUES} more issues")
    if review.get("suggestion"):
        lines.append(f"suggestion: {review['suggestion']}")
    lines += [f"Warning: {w}" for w in output.warnings]  # the answer cut short (its token limit, a loop)
    return "\n".join(lines)


def _review(review: dict[str, Any] | None) -> str:
    """The verdict in words: who reviewed, how it went, or why there is no review."""
    if review is None:
        return "not reviewed"
    status = review.get("status")
    if status in ("unavailable", "unusable") or review.get("approved") is None:
        why = review.get("error") or status or "no verdict"
        return f"no review ({why})"
    verdict = "approved" if review["approved"] else "changes requested"
    score = f", score {review['score']}/10" if review.get("score") is not None else ""
    by = f" by {review['reviewer']}" if review.get("reviewer") else ""
    self_review = " (a self-review: no independent reviewer answered)" if review.get("self_review") else ""
    return f"review{by}: {verdict}{score}{self_review}"


def _consensus(output: ConsensusOutput) -> str:
    if output.synthesis:
        by = f" (by {output.synthesizer})" if output.synthesizer else ""
        lines = [f"Synthesis{by}:", output.synthesis.rstrip()]
    else:
        why = ": ".join(str(p) for p in (output.synthesis_status, output.synthesis_error) if p)
        lines = [f"No synthesis{f' ({why})' if why else ''}."]
    if output.positions:
        lines += ["", "Positions:"]
        for position in output.positions:
            text = str(position.get("text", "")).strip()
            stance = f" ({position['stance']})" if position.get("stance") else ""
            asked = position.get("asked")
            stood_in = f" (standing in for {asked})" if asked and position.get("status") == "stand_in" else ""
            lines.append(f"- {position.get('model', '?')}{stood_in}{stance}: {text}")
    for failed in output.failed:
        who = failed.get("asked") or failed.get("model") or "?"
        if failed.get("foreseen") and failed.get("error"):  # not asked, by design: its error says who and why
            lines.append(f"- {failed['error']}")
            continue
        said = ": ".join(str(failed[k]) for k in ("error_type", "error") if failed.get(k)) or "no answer"
        lines.append(f"- {who} failed: {said}")
    lines += [f"Warning: {w}" for w in output.warnings]
    return "\n".join(lines)


def _image(output: ImageOutput) -> str:
    """What was made and its key (the images' own lines, previews and links follow this text)."""
    ran = list(dict.fromkeys(s.model or s.provider for s in output.trace if s.kind == "image" and s.outcome == "ok"))
    made_by = f" by {' then '.join(ran)}" if ran else ""
    if output.results is None:
        details = output.details
        size = f" {details['width']}x{details['height']}" if details.get("width") and details.get("height") else ""
        lines = [f"Done{made_by}:{size} image stored as key {output.key}" if output.key else f"Done{made_by}."]
        if output.url:  # a file:// or public URL; a presigned one never enters a result
            lines.append(f"download: {output.url}")
        lines += [str(details[k]) for k in ("url_note", "inline_omitted") if details.get(k)]
        return "\n".join([*lines, *_warned(details)])
    good = [e for e in output.results if e.get("key")]
    lines = [f"Done{made_by}: {len(good)} of {len(output.results)} images"]
    for n, entry in enumerate(output.results):
        where = f"images[{entry.get('index', n)}]"
        lines.append(f"- {where}: key {entry['key']}" if entry.get("key") else f"- {where} failed: {_error(entry.get('error'))}")
    return "\n".join([*lines, *_warned(output.details)])


def _warned(details: dict[str, Any]) -> list[str]:
    """An image result's warnings (a JPEG that dropped the transparency) as the client reads them:
    they were only in the structured content's details."""
    return [f"Warning: {w}" for w in details.get("warnings") or []]


def _error(error: Any) -> str:
    """``{type, message}`` as "Type: message" (a string as it is)."""
    if isinstance(error, dict):
        return ": ".join(str(error[k]) for k in ("type", "message") if error.get(k)) or "failed"
    return str(error or "failed")


def _when(stamp: float | None) -> str:
    """A Unix time as UTC, to the second."""
    if not stamp:
        return "?"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def job_line(job: dict[str, Any]) -> str:
    """One job in one line: id, what it runs, where it stands, when, how long (the fields of
    ``job_status``)."""
    said, share = _progress(job.get("progress"))
    done = f" {share}" if share and job.get("status") == "IN_PROGRESS" else ""
    status = f"{job.get('status')}{done}" + (f" ({said})" if said and job.get("status") == "IN_PROGRESS" else "")
    error = job.get("error") or {}
    if error:
        status += f": {_error(error)}"
    if job.get("status") == "IN_PROGRESS" and job.get("runs_in"):
        status += f" (running in another swarm-mcp process, pid {job['runs_in']}: ask the client connected to it)"
    elif job.get("status") == "IN_PROGRESS" and not job.get("running_here", True):
        status += " (waiting to be resumed: job_result or job_status resumes it here)"
    took = f", {job['elapsed_ms'] / 1000:.1f} s" if job.get("elapsed_ms") is not None else ""
    return f"{job.get('job_id')}  {job.get('project')}/{job.get('action')}  {status}  started {_when(job.get('created_at'))}{took}"


def jobs_text(jobs: list[dict[str, Any]]) -> str:
    """``list_jobs``: one line per job, newest first."""
    if not jobs:
        return "no jobs"
    return f"{len(jobs)} job(s), newest first:\n" + "\n".join(job_line(j) for j in jobs)


def threads_text(threads: list[dict[str, Any]]) -> str:
    """``list_threads``: one line per conversation, latest first."""
    if not threads:
        return "no threads"
    lines = [f"{len(threads)} thread(s), latest first (turns: swarm://threads/{{thread_id}}):"]
    for t in threads:
        dropped = f", {t['dropped']} oldest dropped" if t.get("dropped") else ""
        began = str(t.get("started_with") or "").strip().replace("\n", " ")
        # the first turn may be among the dropped: then the line says what the oldest kept one is
        label = "earliest kept" if t.get("dropped") else "began"
        lines.append(f"{t.get('thread_id')}  {t.get('turns')} turn(s){dropped}  updated {_when(t.get('updated_at'))}"
                     f"  {label}: {began}")
    return "\n".join(lines)


def _progress(progress: dict[str, Any] | None) -> tuple[str | None, str]:
    """(what the last progress says, its share done as "40%" or ""): a share only from a finite
    number, not a bool."""
    progress = progress or {}
    fraction = progress.get("fraction")
    counted = isinstance(fraction, int | float) and not isinstance(fraction, bool) and math.isfinite(fraction)
    return progress.get("message") or progress.get("stage"), f"{fraction:.0%}" if counted else ""
