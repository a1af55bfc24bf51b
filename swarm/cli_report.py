"""What ``swarm`` prints of a job's result: the answer (or what a failed job had made), the
trace table, the totals line, the error, and how to resume the job."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from swarm.table import print_table

#: a step's detail in the trace table; a longer one is cut there and written whole under the table
DETAIL_CHARS = 70
#: the end of a cut detail that the job's error line, under the table, says whole
SAID_BELOW = "… (error below)"


def _print_trace(trace: list[dict[str, Any]], stream: Any = None, error: str = "") -> None:
    """The trace as a readable table; nothing when no step ran (an input refused before the job).
    A detail longer than the column (why a model failed: "cannot connect: ... [Domain name not
    found]") ends in a note number there, and the note under the table holds all of it; unless the
    job's ``error``, printed after the table, says it whole (a model not pulled: the step's detail
    is the error), which the cut detail then points to. ``stream``: default, ``sys.stderr`` as it is
    at the call (a default bound at import kept a replaced one: a test's capture, then a closed file)."""
    if not trace:
        return
    stream = sys.stderr if stream is None else stream
    header = ("step", "kind", "model / provider", "outcome", "ms", "tok in/out", "cost $", "detail")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for s in trace:
        detail = " ".join(str(s.get("detail") or "").split())
        if len(detail) > DETAIL_CHARS and detail in error:
            detail = detail[: DETAIL_CHARS - len(SAID_BELOW)].rstrip() + SAID_BELOW
        elif len(detail) > DETAIL_CHARS:
            notes.append(f"[{len(notes) + 1}] {s.get('step', '')} {s.get('model') or s.get('provider') or ''}: {detail}")
            mark = f"… [{len(notes)}]"
            detail = detail[: DETAIL_CHARS - len(mark)].rstrip() + mark
        cost = s.get("cost_usd")
        rows.append((
            str(s.get("step", "")),
            str(s.get("kind", "")),
            str(s.get("model") or s.get("provider") or ""),
            str(s.get("outcome", "")) + (f" ({s['error_class']})" if s.get("error_class") else ""),
            f"{float(s.get('latency_ms') or 0):.0f}",
            f"{s.get('input_tokens') or 0}/{s.get('output_tokens') or 0}",
            "-" if cost is None else f"{cost:.6f}",
            detail,
        ))
    print_table(header, rows, stream)
    if notes:
        print("", *notes, sep="\n", file=stream)


#: failures a run of the same job id may get past: the worker or the endpoint went away (the
#: finished steps are in its checkpoints; a RunPod job is followed, or submitted anew when gone)
RESUMABLE_ERRORS = frozenset({"WorkerError", "ProviderUnavailable", "ProviderTimeout"})
#: an error that names what to do first, a command or a setting ("...; run: swarm models pull X",
#: "...; set SWARM_MODELS_DIR to ..."): the same job fails the same way again until it is done
FIX_FIRST = re.compile(r"; (?:run: |set )")

#: an input longer than this is not printed in the resume command (an inline image is megabytes)
RESUME_INPUT_CHARS = 2000


def _resume_command(args: argparse.Namespace, job: dict[str, Any]) -> str:
    """The command that resumes ``job``; an input that holds a secret (a signed URL, a key) or is
    long is not printed: the line says to give the same input again."""
    from core.redact import redact

    config = ["--config", args.config] if args.config else []
    argv = ["swarm", *config, "run", job["project"], job["action"], "--job-id", job["job_id"]]
    given = json.dumps(job["input"], ensure_ascii=False)
    if redact(given) != given or len(given) > RESUME_INPUT_CHARS:
        why = "it holds a secret" if redact(given) != given else f"it is {len(given)} characters"
        return f"{shlex.join(argv)} --input '<the same input as before: {why}, so it is not printed>'"
    return shlex.join([*argv, "--input", given])


def _consensus_text(output: dict[str, Any]) -> str | None:
    """A consensus result as text: the synthesis (or why there is none), then each position whole."""
    if "positions" not in output:
        return None
    by = f" (by {output['synthesizer']})" if output.get("synthesizer") else ""
    synthesis = str(output.get("synthesis") or "").strip()
    why = ": ".join(str(p) for p in (output.get("synthesis_status"), output.get("synthesis_error")) if p)
    lines = [f"## Synthesis{by}", "", synthesis] if synthesis else [f"No synthesis{f' ({why})' if why else ''}."]
    for position in output.get("positions") or []:
        model, asked = position.get("model") or "?", position.get("asked")
        # a family's own model answering is no stand-in (``asked`` names the family, ``model`` the model)
        stood_in = f" (standing in for {asked})" if asked and position.get("status") == "stand_in" else ""
        stance = f", {position['stance']}" if position.get("stance") else ""
        lines += ["", f"## {model}{stood_in}{stance}", "", str(position.get("text") or "").strip()]
    failed = output.get("failed") or []
    if failed:  # not asked (its stand-in is on the panel: the error says why) or no answer
        lines += ["", "## Not answered", ""]
        lines += [f"- {f.get('asked') or f.get('model') or '?'}: {f.get('error') or f.get('error_type') or 'no answer'}"
                  for f in failed]
    return "\n".join(lines)


def _report(args: argparse.Namespace, result: dict[str, Any], job: dict[str, Any] | None = None) -> int:
    from core.redact import redact_data

    result = redact_data(result)  # the last door: what an executor added after its own redaction too
    text = json.dumps(result, indent=2, ensure_ascii=False)
    unwritten = False
    if args.out:
        try:
            Path(args.out).write_text(text + "\n", encoding="utf-8")
            print(f"result written to {args.out}", file=sys.stderr)
        except OSError as exc:  # the answer is printed below all the same: a finished job is never lost
            print(f"error: --out: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
            unwritten = True
    if args.json:
        print(text)
    else:
        output = result.get("output") or {}
        main_text = output.get("text") or output.get("report") or _consensus_text(output)
        if result["status"] == "COMPLETED" and main_text is not None:
            print(main_text)
        elif result["status"] == "COMPLETED":
            print(json.dumps(output, indent=2, ensure_ascii=False))
        elif output.get("partial"):
            _print_partial(output, main_text)
        for warning in output.get("warnings") or []:  # e.g. a research draft replaced by quotes
            print(f"warning: {warning}", file=sys.stderr)
        if not args.quiet:
            print("", file=sys.stderr)
            _print_trace(result.get("trace", []), error=" ".join(str((result.get("error") or {}).get("message") or "").split()))
            totals = result.get("totals", {})
            cost = totals.get("cost_usd")  # None: no step of a known price (a model whose price config does not give)
            # the id this side gave the job (the one a resume takes), with RunPod's own beside it
            ours = (job or {}).get("job_id") or result["job_id"]
            theirs = f" (RunPod job {result['job_id']})" if result.get("job_id") and result["job_id"] != ours else ""
            print(
                f"\njob {ours}{theirs}: {result['status']} in {result.get('elapsed_ms', 0):.0f} ms,"
                f" tokens {totals.get('input_tokens', 0)}/{totals.get('output_tokens', 0)},"
                f" cost {'unknown' if cost is None else f'${cost:.6f}'}",
                file=sys.stderr,
            )
    if result["status"] != "COMPLETED":
        error = result.get("error") or {}
        print(f"error: {error.get('type')}: {error.get('message')}", file=sys.stderr)
        if error.get("type") == "StillRunning" and job is not None:  # the same id follows, never resubmits
            print(f"follow it with: {_resume_command(args, job)}", file=sys.stderr)
        elif error.get("type") in RESUMABLE_ERRORS and job is not None:  # its finished steps are kept
            _print_resume(args, job, result, str(error.get("message") or ""))
        return 1
    return 1 if unwritten else 0


def _print_resume(args: argparse.Namespace, job: dict[str, Any], result: dict[str, Any], message: str) -> None:
    """How to run a failed job again from its last finished step. After an error that names what
    to do first (a model to pull), only once that is done; and not at all when no step had
    finished: a run of the same command is all a resume would be."""
    if not FIX_FIRST.search(message):
        print(f"run it again, from its last finished step: {_resume_command(args, job)}", file=sys.stderr)
        return
    finished = finished_steps(result)
    if finished:
        print(f"once that is done, run it again; it resumes after {finished[-1]}:"
              f" {_resume_command(args, job)}", file=sys.stderr)


def finished_steps(result: dict[str, Any]) -> list[str]:
    """The steps of a failed job that a resume does not run again, in the order they finished: an
    image job's ``steps_done`` (its partial output), else the graph nodes that returned (each
    records a ``node`` step of provider ``graph`` as it returns, also when what it records is a
    failure it absorbed) and the image steps that succeeded. A provider call that succeeded inside
    a node that then raised is not one: that node runs again."""
    output = result.get("output") or {}
    if isinstance(output, dict) and output.get("steps_done"):
        return [str(step) for step in output["steps_done"]]
    done: dict[str, None] = {}
    for step in result.get("trace") or []:
        node = step.get("kind") == "node" and step.get("provider") == "graph"
        if node or (step.get("kind") == "image" and step.get("outcome") == "ok"):
            done.pop(str(step.get("step")), None)  # a node that ran again (a review loop) finished last then
            done[str(step.get("step"))] = None
    return list(done)


def _print_partial(output: dict[str, Any], main_text: str | None) -> None:
    """What a failed job had made, marked as such: its text, or the stored image of an image job's
    finished steps (a pipeline whose upscale failed after its background removal)."""
    stopped = f" (stopped at {output['stopped_at']})" if output.get("stopped_at") else ""
    if main_text:
        print(f"partial result{stopped}: the job failed, this is what it had produced", file=sys.stderr)
        print(main_text)
    elif output.get("image_key"):
        after = " then ".join(output.get("steps_done") or [])
        print(f"partial result{stopped}: image after {after} stored as key {output['image_key']}", file=sys.stderr)
