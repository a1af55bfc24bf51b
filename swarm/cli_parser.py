"""The ``swarm`` command line's parser: every subcommand with what it does and an example, a
near miss of a command or an option answered with the name meant."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from core.rules import TIERS
from swarm import index_cli

#: Subcommands implemented by another module's ``main(argv)``; their flags are theirs.
DELEGATED: dict[str, tuple[str, str]] = {
    "models": ("swarm.models_cli:main", "pull and list image model weights"),
    "endpoint": ("swarm.endpoint.__main__:main", "a local RunPod endpoint for development and tests"),
    "bench": ("bench.__main__:main", "every speed figure against its anchor (writes bench/RESULTS.md)"),
}

#: argparse's refusal of a value outside ``choices`` (a subcommand too): the value and the choices
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<given>[^']*)' \(choose from (?P<choices>.*)\)")


def _suggestion(given: str, names: list[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``names`` to ``given``, else nothing."""
    close = difflib.get_close_matches(given, names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class SwarmArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors name the command or option meant (``swarm dlegate``,
    ``swarm delegate --tire``) and whose leaf subcommand refuses an unknown option itself, with
    its own usage line (the top level's said ``swarm [-h] {delegate,...}`` for ``delegate --x``)."""

    def error(self, message: str) -> NoReturn:
        found = _INVALID_CHOICE.search(message)
        if found:
            message += _suggestion(found["given"], re.findall(r"'([^']*)'", found["choices"]))
        super().error(message)

    def parse_known_args(  # type: ignore[override]  # one signature for typeshed's overloads
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:  # a leaf: nothing below it could take them
            options = [o for action in self._actions for o in action.option_strings]
            unknown = next((e.split("=", 1)[0] for e in extras if e.startswith("-")), "")
            self.error(f"unrecognized arguments: {' '.join(extras)}" + _suggestion(unknown, options))
        return parsed, extras


def help_text(doc: str) -> str:
    """A docstring as ``--help`` shows it: without reST's double backquotes and ``::``."""
    return doc.replace("``", "").replace("::\n", ":\n")


def _command(sub: Any, name: str, summary: str, example: str, fn: Callable[..., int] | None = None,
             **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does (``summary``) and shows ``example``."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=summary[:1].upper() + summary[1:] + ".", epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    if fn is not None:
        p.set_defaults(fn=fn)
    return p


def _job_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the whole result envelope as JSON")
    p.add_argument("--out", help="also write the result envelope to this file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no trace table")
    p.add_argument("--job-id", help="the job's id (default: a new one, printed): the same id with the same"
                   " input resumes an interrupted job or returns a finished one's result")


def build_parser(commands: Mapping[str, Callable[..., int]], description: str) -> argparse.ArgumentParser:
    """The ``swarm`` parser; ``commands`` maps each command's name (``config check``: ``config_check``)
    to its function, ``description`` is what ``swarm --help`` says first."""
    parser = SwarmArgumentParser(prog="swarm", description=help_text(description),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="config file (default: $SWARM_CONFIG or the project's config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "delegate", "delegate a task (primary drafts, reviewer checks)",
                 'swarm delegate "Summarise the design in three bullets"', commands["delegate"])
    p.add_argument("task", help="what to do, in words")
    p.add_argument("--kind", default="bulk_content", help="the routing.delegation entry that picks the models"
                   " (default: bulk_content)")
    p.add_argument("--tier", choices=TIERS)
    _job_flags(p)

    p = _command(sub, "research", "research a question with cited sources",
                 'swarm research "How do tiers and fallback chains work?" --depth quick', commands["research"])
    p.epilog = (f"{p.epilog}\n\nsources: SearXNG (SEARXNG_URL), Tavily (TAVILY_API_KEY), else the local index, which"
                " holds the project's example notes\nuntil you index your own documents:\n  swarm index build ~/papers")
    p.add_argument("question")
    p.add_argument("--depth", default="standard", choices=["quick", "standard", "deep"])
    p.add_argument("--max-sources", type=int)
    p.add_argument("--mode", default="auto", choices=["auto", "extractive", "abstractive"],
                   help="extractive: quoted passages only; abstractive: the model writes; auto: extractive"
                   " when the writer is the local model or its draft fails the grounding check")
    _job_flags(p)

    p = _command(sub, "consensus", "ask a panel of models, then synthesize their positions",
                 'swarm consensus "Is SQLite enough for this?" --models deepseek,claude', commands["consensus"])
    p.add_argument("question")
    p.add_argument("--models", help="comma-separated models or families (default: routing.consensus.models)")
    p.add_argument("--stances", help="comma-separated, one per model: for, against, neutral")
    p.add_argument("--tier", choices=TIERS)
    _job_flags(p)

    p = _command(sub, "run", "run any {project, action} with a JSON input",
                 """swarm run image_tools upscale --input '{"path": "cat.png", "scale": 4}'""", commands["run"])
    p.add_argument("project", help="image_tools or swarm")
    p.add_argument("action", help="image_tools: upscale, remove_background, ...; swarm: delegate, research, consensus")
    p.add_argument("--input", help="the action's input as a JSON object (default: {})")
    _job_flags(p)

    config = _command(sub, "config", "config tools", "swarm config check")
    p = _command(config.add_subparsers(dest="config_command", required=True, metavar="{check}"), "check",
                 "validate and print the effective config, secrets redacted", "swarm --config my.yaml config check",
                 commands["config_check"])

    threads = _command(sub, "threads", "conversation threads (kept by swarm-mcp)", "swarm threads import")
    _command(threads.add_subparsers(dest="threads_command", required=True, metavar="{import}"), "import",
             "copy the threads kept in SQLite into PostgreSQL after a switch to it (checkpointer.kind: postgres);"
             " threads already there are skipped", "swarm threads import", commands["threads_import"])

    p = _command(sub, "health", "whether each model would be called now (its key set, its circuit closed) and its"
                 " circuit: nothing is sent; swarm doctor asks each one whose API has a cheap probe (GET /models:"
                 " DeepSeek, OpenAI-compatible bases)", "swarm health --json", commands["health"])
    p.add_argument("--json", action="store_true", help="every model's availability and circuit as JSON")

    p = _command(sub, "doctor", "check this machine and config: one line per finding, with the fix",
                 "swarm doctor --quick", commands["doctor"])
    p.add_argument("--json", action="store_true", help="the findings and the overall status as JSON")
    p.add_argument("--quick", "--no-canary", dest="quick", action="store_true", help="do not start the local model")

    index_cli.add_parser(sub)

    for name, (_, summary) in DELEGATED.items():
        p = sub.add_parser(name, help=summary, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def print_help_for_nothing(parser: argparse.ArgumentParser) -> int:
    """``swarm`` alone: the whole help (every command, what it does, examples) on stderr, exit 2;
    it said only "the following arguments are required: command"."""
    parser.print_help(sys.stderr)
    return 2
