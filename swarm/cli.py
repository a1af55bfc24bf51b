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
import atexit
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from core.errors import ConfigError, SwarmError
from core.rules import JOB_ID_PATTERN, MAX_JOB_ID_CHARS, valid_job_id
from swarm import cli_parser
from swarm.cli_parser import DELEGATED
from swarm.cli_report import (  # noqa: F401 - re-exported: what the command prints lives there
    DETAIL_CHARS,
    FIX_FIRST,
    RESUMABLE_ERRORS,
    _print_trace,
    _report,
    _resume_command,
    finished_steps,
)
from swarm.table import print_table


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
    before = set(threading.enumerate())
    try:
        # on Ctrl-C asyncio.run cancels the job (its runtime closes, a remote job is cancelled)
        # and then raises KeyboardInterrupt here
        return asyncio.run(_run_job(args, job))
    except KeyboardInterrupt:
        how = "terminated" if terminated else "interrupted"
        code = EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
        print(f"\njob {job['job_id']}: {how}; the finished steps are kept: resume with: {_resume_command(args, job)}",
              file=sys.stderr, flush=True)
        _wait_for_the_step_in_flight(before, code)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


#: the modules of a thread pool's own code (anyio's, asyncio's, concurrent.futures'): a thread whose
#: stack holds nothing else runs no step; it is a pool's worker, parked or exiting
_POOL_MODULES = ("threading", "queue", "contextlib", "concurrent.futures", "asyncio", "anyio")
#: how long, after a Ctrl-C, a pool's idle threads are waited for, silently: anyio's exit a moment
#: after their event loop ended (longer on a loaded machine); one parked in a pool left open exits
#: only at the interpreter's exit
IDLE_THREADS_WAIT_S = 1.0


def _wait_for_the_step_in_flight(before: set[threading.Thread], code: int) -> None:
    """After a Ctrl-C, wait for a step the job left running on a worker thread (an image tile: it
    stops at its next checkpoint), saying so; a second Ctrl-C (or kill) quits at once with ``code``.
    The process waited silently at exit, and a second Ctrl-C there was a traceback, then an abort.
    A pool's idle thread is no step: it is waited for a moment, unsaid."""
    started = [thread for thread in threading.enumerate()
               if thread not in before and not thread.daemon and thread.is_alive()]
    steps = _running_steps(started)
    try:
        if steps:
            print("stopping the step in progress (Ctrl-C again to quit now)", file=sys.stderr, flush=True)
            for thread in steps:
                thread.join()
        deadline = time.monotonic() + IDLE_THREADS_WAIT_S
        for thread in started:
            thread.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        atexit._run_exitfuncs()  # what an exit runs (a local model server this process started stops) less the wait
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _running_steps(threads: list[threading.Thread]) -> list[threading.Thread]:
    """Those of ``threads`` running the job's code: a frame of their stack is outside the pools'
    modules (an idle anyio worker is only in ``queue.get``, called from anyio's worker loop)."""
    frames = sys._current_frames()
    return [thread for thread in threads if thread.ident is not None and _runs_a_step(frames.get(thread.ident))]


def _runs_a_step(frame: FrameType | None) -> bool:
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if not any(module == pool or module.startswith(f"{pool}.") for pool in _POOL_MODULES):
            return True
        frame = frame.f_back
    return False


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
            from swarm.envelope import JobEnvelope, totals_of

            # the dispatcher's keys (project, action, elapsed_ms; totals of no step: nothing spent)
            result = JobEnvelope.for_job(job, job["job_id"], status="FAILED", totals=totals_of([]), error={
                "type": type(exc).__name__, "message": redact(str(exc))}).to_dict()
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
    from graphs.actions import ACTIONS

    inp = job.get("input")
    # an unknown action is the dispatcher's to name, with the valid ones ("upscle" with no input
    # was refused as "input.image: give one of image, path, url, key")
    if job.get("project") != "image_tools" or job.get("action") not in ACTIONS["image_tools"] \
            or not isinstance(inp, dict):
        return job
    from swarm.local_images import read_local_sources

    # a relative path names a file in the folder the command runs in
    return {**job, "input": await read_local_sources(config, inp, prefix="input.", base=Path.cwd())}


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


def build_parser() -> argparse.ArgumentParser:
    """The ``swarm`` parser (``swarm.cli_parser``), with this module's commands."""
    commands = {"delegate": cmd_delegate, "research": cmd_research, "consensus": cmd_consensus, "run": cmd_run,
                "config_check": cmd_config_check, "threads_import": cmd_threads_import, "health": cmd_health,
                "doctor": cmd_doctor}
    return cli_parser.build_parser(commands, __doc__ or "")


def _not_a_failed_job(record: logging.LogRecord) -> bool:
    from swarm.dispatcher import JOB_FAILED_MARK

    return not getattr(record, JOB_FAILED_MARK, False)


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
    parser = build_parser()
    if not argv:
        return cli_parser.print_help_for_nothing(parser)
    args = parser.parse_args(argv)
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
