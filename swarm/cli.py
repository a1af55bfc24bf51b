"""``swarm``: run any action from the terminal, check config, manage the index, models and
the local RunPod endpoint.

Examples::

    swarm delegate "Summarise the design in three bullets"
    swarm research "How do tiers and fallback chains work?"
    swarm run image_tools upscale --input '{"path": "cat.png", "scale": 4}'
    swarm config check
    swarm threads import
    swarm doctor
    swarm index build ~/papers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shlex
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import ConfigError, SwarmError
from core.rules import JOB_ID_PATTERN, MAX_JOB_ID_CHARS, TIERS, valid_job_id
from swarm import index_cli
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


def _progress_printer(quiet: bool) -> Callable[..., Any]:
    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        if not quiet:
            pct = f" {fraction * 100:3.0f}%" if fraction is not None else ""
            print(f"  [{stage}]{pct} {message}", file=sys.stderr, flush=True)

    return progress


#: the exit status of a job stopped by Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_INTERRUPTED = 130
#: and by SIGTERM (128 + 15)
EXIT_TERMINATED = 143


def _run(args: argparse.Namespace, job: dict[str, Any]) -> int:
    """Run ``job`` under an id made here when none is given, so that a Ctrl-C can say how to
    resume it: the checkpointed steps are kept, and the same id with the same input resumes."""
    if args.job_id is not None and valid_job_id(args.job_id) is None:
        print(f"error: --job-id: {args.job_id[:40]!r} is not a job id: at most {MAX_JOB_ID_CHARS} characters"
              f" of {JOB_ID_PATTERN}", file=sys.stderr)
        return 2
    job = {**job, "job_id": args.job_id or str(uuid.uuid4())}
    terminated: list[int] = []

    def on_term(signum: int, frame: Any) -> None:  # a kill (SIGTERM) as a Ctrl-C: it exited -15, unsaid
        terminated.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (a caller running the command in a worker thread)
        previous = None
    try:
        # on Ctrl-C asyncio.run cancels the job (its runtime closes, a remote job is cancelled)
        # and then raises KeyboardInterrupt here
        return asyncio.run(_run_job(args, job))
    except KeyboardInterrupt:
        how = "terminated" if terminated else "interrupted"
        print(f"\njob {job['job_id']}: {how}; the finished steps are kept: resume with: {_resume_command(args, job)}",
              file=sys.stderr, flush=True)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


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


async def _run_job(args: argparse.Namespace, job: dict[str, Any]) -> int:
    from swarm.runtime import Runtime

    runtime = Runtime(args.config)
    try:
        from swarm.executors import make_executor

        runner = make_executor(runtime.config, runtime)
        if not args.quiet:  # said once the config loaded: a bad one is exit 2, no job ran
            print(f"job {job['job_id']}: started", file=sys.stderr, flush=True)
        try:
            sent = await _with_local_files(runtime.config, job)
        except SwarmError as exc:  # before the job ran: a FAILED envelope as the dispatcher's, for --json/--out
            from core.redact import redact

            result = {"job_id": job["job_id"], "status": "FAILED", "output": None, "trace": [], "totals": {},
                      "error": {"type": type(exc).__name__, "message": redact(str(exc))}}
        else:
            result = await runner.run(sent, _progress_printer(args.quiet))
    finally:
        await runtime.aclose()
    return _report(args, result, job)


async def _with_local_files(config: Any, job: dict[str, Any]) -> dict[str, Any]:
    """An image job whose input names local files (``path``, ``images[i].path``) with them read
    into ``image``, as the MCP server reads them: the runner, local or a RunPod worker, gets the
    data. ``job`` itself keeps the paths (a resume command names the file, not megabytes). Every
    image input goes through the same door as the MCP server's: a file's path given as ``image``
    is told to be given as ``path`` (the job said only "image: not valid base64")."""
    inp = job.get("input")
    if job.get("project") != "image_tools" or not isinstance(inp, dict):
        return job
    from swarm.local_images import read_local_sources

    # a relative path names a file in the folder the command runs in
    return {**job, "input": await read_local_sources(config, inp, prefix="input.", base=Path.cwd())}


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


def cmd_delegate(args: argparse.Namespace) -> int:
    inp = {"task": args.task, "kind": args.kind}
    if args.tier:
        inp["tier"] = args.tier
    return _run(args, {"project": "swarm", "action": "delegate", "input": inp})


def cmd_research(args: argparse.Namespace) -> int:
    inp: dict[str, Any] = {"question": args.question, "depth": args.depth, "mode": args.mode}
    if args.max_sources is not None:  # 0 too: the input model refuses it, naming the limit
        inp["max_sources"] = args.max_sources
    return _run(args, {"project": "swarm", "action": "research", "input": inp})


def cmd_consensus(args: argparse.Namespace) -> int:
    inp: dict[str, Any] = {"question": args.question}
    if args.models:
        inp["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.stances:
        inp["stances"] = [s.strip() for s in args.stances.split(",") if s.strip()]
    if args.tier:
        inp["tier"] = args.tier
    return _run(args, {"project": "swarm", "action": "consensus", "input": inp})


def cmd_run(args: argparse.Namespace) -> int:
    try:
        # no --input is {}; an empty one is no JSON (it ran as {} and failed as a job, exit 1)
        inp = json.loads(args.input) if args.input is not None else {}
    except json.JSONDecodeError as exc:
        print(f"error: --input is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(inp, dict):  # a list or a string made a job that failed on "job.input"
        print(f"error: --input must be a JSON object ({{...}}), not a JSON {type(inp).__name__}", file=sys.stderr)
        return 2
    if inp.get("thread_id"):
        # a thread's turns are kept and sent by swarm-mcp; here the id was echoed with no history
        print("error: input.thread_id: conversations are kept by swarm-mcp (its tools take thread_id and list_threads"
              " lists them); the command line runs one job at a time, so leave thread_id out", file=sys.stderr)
        return 2
    return _run(args, {"project": args.project, "action": args.action, "input": inp})


def cmd_config_check(args: argparse.Namespace) -> int:
    import yaml

    from core.config import check_state_folders, config_path, load_config, redacted_dump

    config = load_config(config_path(args.config))
    check_state_folders(config, create=False)  # a checkpointer.path no job can use: every job failed on it
    from swarm.executors import runner_in_effect
    from swarm.executors.runpod_unreachable import bad_endpoint_id

    # what every job would be refused for (an endpoint id with a space) is no valid config either:
    # it said "valid", and every delegate then exited 2 with the error
    runner = runner_in_effect(config, worker=False)
    if runner.error is not None:
        raise runner.error
    if runner.kind == "runpod" and (why := bad_endpoint_id(config.runner.runpod.endpoint_id)):
        raise ConfigError(why, key="runner.runpod.endpoint_id")
    print(f"# {config_path(args.config)}: valid", file=sys.stderr)
    print(yaml.safe_dump(redacted_dump(config), sort_keys=False))

    missing = sorted({m.api_key_env for m in config.models.values() if m.api_key_env and not os.environ.get(m.api_key_env)})
    if missing:
        from core.redact import redact

        print(f"# models whose key is unset (skipped at call time): {redact(', '.join(missing))}", file=sys.stderr)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    async def go() -> dict[str, Any]:
        from swarm.runtime import Runtime

        runtime = Runtime(args.config)
        try:
            return await runtime.providers().llm.health()  # type: ignore[attr-defined]  # the router's
        finally:
            await runtime.aclose()

    from core.redact import redact_data

    health = redact_data(asyncio.run(go()))  # a reason or last error may quote what config holds
    if args.json:
        print(json.dumps(health, indent=2))
        return 0
    rows = []
    for name, said in health.items():
        circuit = said.get("circuit") or {}
        state = str(circuit.get("state", "-"))
        if circuit.get("consecutive_failures"):
            state += f" ({circuit['consecutive_failures']} failed in a row)"
        rows.append((name, "yes" if said.get("available") else "no", str(said.get("reason") or ""), state,
                     " ".join(str(circuit.get("last_error") or "").split())[:DETAIL_CHARS]))
    print_table(("model", "callable", "why not", "circuit", "last error"), rows, sys.stdout)
    print("\n(circuits as this process sees them; the MCP server's own: its swarm://providers resource;"
          " swarm doctor asks each model)", file=sys.stderr)
    return 0


def cmd_threads_import(args: argparse.Namespace) -> int:
    from core.config import config_path, load_config
    from swarm.threads import import_sqlite_threads

    config = load_config(config_path(args.config))
    path, copied, skipped = import_sqlite_threads(config.checkpointer)
    print(f"threads: {copied} copied from {path} into PostgreSQL (checkpointer.dsn), {skipped} already there;"
          f" {path} is left as it was", file=sys.stderr)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from swarm.doctor_report import cmd_doctor as doctor

    return doctor(args)


#: Subcommands implemented by another module's ``main(argv)``; their flags are theirs.
DELEGATED: dict[str, tuple[str, str]] = {
    "models": ("swarm.models_cli:main", "pull and list image model weights"),
    "endpoint": ("swarm.endpoint.__main__:main", "a local RunPod endpoint for development and tests"),
    "bench": ("bench.__main__:main", "every speed figure against its anchor (writes bench/RESULTS.md)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swarm", description=_help_text(__doc__ or ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="config file (default: $SWARM_CONFIG or the project's config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    def job_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print the whole result envelope as JSON")
        p.add_argument("--out", help="also write the result envelope to this file")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress and no trace table")
        p.add_argument("--job-id", help="the job's id (default: a new one, printed): the same id with the same"
                       " input resumes an interrupted job or returns a finished one's result")

    p = sub.add_parser("delegate", help="delegate a task (primary drafts, reviewer checks)")
    p.add_argument("task")
    p.add_argument("--kind", default="bulk_content")
    p.add_argument("--tier", choices=TIERS)
    job_flags(p)
    p.set_defaults(fn=cmd_delegate)

    p = sub.add_parser("research", help="research a question with cited sources")
    p.add_argument("question")
    p.add_argument("--depth", default="standard", choices=["quick", "standard", "deep"])
    p.add_argument("--max-sources", type=int)
    p.add_argument("--mode", default="auto", choices=["auto", "extractive", "abstractive"],
                   help="extractive: quoted passages only; abstractive: the model writes; auto: extractive"
                   " when the writer is the local model or its draft fails the grounding check")
    job_flags(p)
    p.set_defaults(fn=cmd_research)

    p = sub.add_parser("consensus", help="ask a panel of models, then synthesize their positions")
    p.add_argument("question")
    p.add_argument("--models", help="comma-separated models or families (default: routing.consensus.models)")
    p.add_argument("--stances", help="comma-separated, one per model: for, against, neutral")
    p.add_argument("--tier", choices=TIERS)
    job_flags(p)
    p.set_defaults(fn=cmd_consensus)

    p = sub.add_parser("run", help="run any {project, action} with a JSON input")
    p.add_argument("project")
    p.add_argument("action")
    p.add_argument("--input", help="JSON object")
    job_flags(p)
    p.set_defaults(fn=cmd_run)

    config = sub.add_parser("config", help="config tools").add_subparsers(dest="config_command", required=True)
    p = config.add_parser("check", help="validate and print the effective config, secrets redacted")
    p.set_defaults(fn=cmd_config_check)

    threads = sub.add_parser("threads", help="conversation threads (kept by swarm-mcp)").add_subparsers(
        dest="threads_command", required=True)
    p = threads.add_parser("import", help="copy the threads kept in SQLite into PostgreSQL after a switch to it"
                           " (checkpointer.kind: postgres); threads already there are skipped")
    p.set_defaults(fn=cmd_threads_import)

    p = sub.add_parser("health", help="whether each model would be called now (its key set, its circuit closed)"
                       " and its circuit: nothing is sent; swarm doctor asks each one whose API has a cheap probe"
                       " (GET /models: DeepSeek, OpenAI-compatible bases)")
    p.add_argument("--json", action="store_true", help="every model's availability and circuit as JSON")
    p.set_defaults(fn=cmd_health)

    p = sub.add_parser("doctor", help="check this machine and config: one line per finding, with the fix")
    p.add_argument("--json", action="store_true", help="the findings and the overall status as JSON")
    p.add_argument("--quick", "--no-canary", dest="quick", action="store_true", help="do not start the local model")
    p.set_defaults(fn=cmd_doctor)

    index_cli.add_parser(sub)

    for name, (_, help_text) in DELEGATED.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _not_a_failed_job(record: logging.LogRecord) -> bool:
    from swarm.dispatcher import JOB_FAILED_MARK

    return not getattr(record, JOB_FAILED_MARK, False)


def _help_text(doc: str) -> str:
    """The module docstring as ``--help`` shows it: without reST's double backquotes and ``::``."""
    return doc.replace("``", "").replace("::\n", ":\n")


def _out_problem(out: str) -> str | None:
    """Why ``--out`` cannot be written, found before the job runs (a paid answer was lost to a
    folder that did not exist); ``None`` when it can."""
    path = Path(out).expanduser()
    if path.is_dir():
        return f"{out} is a folder; name a file in it"
    if not path.parent.is_dir():
        return f"folder {str(path.parent)!r} does not exist; create it or name a file in an existing folder"
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{out} cannot be written here (permission denied)"
    return None


def _global_config(argv: list[str]) -> list[str]:
    """``argv`` without a leading ``--config X`` when a delegated subcommand follows it; the
    file goes to ``SWARM_CONFIG``, which they read (``swarm --config X models list`` crashed)."""
    if argv[:1] == ["--config"] and len(argv) > 2 and argv[2] in DELEGATED:
        os.environ["SWARM_CONFIG"] = argv[1]
        return argv[2:]
    if argv[:1] and argv[0].startswith("--config=") and len(argv) > 1 and argv[1] in DELEGATED:
        os.environ["SWARM_CONFIG"] = argv[0].partition("=")[2]
        return argv[1:]
    return argv


def main(argv: list[str] | None = None) -> int:
    """``swarm``: a reader that stops early (``| head``) ends the output quietly, and Ctrl-C in a
    command without its own resume line is one line, exit 130 (both were Python tracebacks)."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # what is still buffered for the gone reader goes nowhere, not into a second traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None = None) -> int:
    argv = _global_config(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        from providers.registry import import_string

        return int(import_string(DELEGATED[argv[0]][0])(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    if getattr(args, "out", None) and (problem := _out_problem(args.out)):
        print(f"error: --out: {problem}", file=sys.stderr)
        return 2
    from core.redact import install_log_redaction
    from swarm.logs import configure_logging

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        handler = configure_logging(os.environ.get("SWARM_LOG_LEVEL", "WARNING"), json=False)
        handler.addFilter(_not_a_failed_job)  # the `error:` line below the result says it once
        install_log_redaction()
        return args.fn(args)
    except SwarmError as exc:
        print(f"error: {exc.to_dict()['message']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
