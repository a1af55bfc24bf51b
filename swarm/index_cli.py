"""``swarm index build|stats``: index your own documents for the zero-key local search.

Examples::

    swarm index build ~/papers ~/notes      # PDF, DOCX, PPTX, HTML, Markdown, reST, AsciiDoc, text; incremental
    swarm index build --reset               # start over from the configured paths
    swarm index stats                       # documents and pages by format, files not indexed
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

_BAR_WIDTH = 24
_REDRAW_S = 0.1


class ProgressReport:
    """Progress of a build on ``stream``: a redrawn bar on a terminal, else a plain line at every
    tenth of the files (a log or a CI run reads those)."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._drawn_at = float("-inf")
        self._tenth = -1
        self._bar_shown = False

    def __call__(self, done: int, total: int, path: str) -> None:
        if self.tty:
            now = time.monotonic()
            if done < total and now - self._drawn_at < _REDRAW_S:
                return
            self._drawn_at = now
            filled = _BAR_WIDTH * done // max(1, total)
            head = f"\r[{'#' * filled}{'-' * (_BAR_WIDTH - filled)}] {done}/{total} "
            room = max(10, shutil.get_terminal_size((100, 20)).columns - len(head) - 1)
            name = path if len(path) <= room else "…" + path[-(room - 1):]
            self.stream.write(head + name.ljust(room))
            self._bar_shown = True
            if done == total:
                self.stream.write("\n")
                self._bar_shown = False
        else:
            tenth = 10 * done // max(1, total)
            if tenth != self._tenth or done == total:
                self._tenth = tenth
                self.stream.write(f"indexed {done}/{total} files ({100 * done // max(1, total)}%)\n")
        self.stream.flush()

    def close(self) -> None:
        """End a bar left on its line (a build that stopped early)."""
        if self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()


#: the most files of one kind (added, updated, removed, skipped by type) the summary names; --json names all
_NAMED = 10


def _first(lines: list[str]) -> list[str]:
    """``lines``, the first ``_NAMED`` of them, with a line saying how many more there are."""
    more = len(lines) - _NAMED
    return lines[:_NAMED] + ([f"  … and {more} more (--json lists them all)"] if more > 0 else [])


def _summary(stats: dict[str, Any]) -> str:
    lines = [
        f"index {stats['index_path']}: {stats['total']} documents"
        f" ({stats['added']} added, {stats['updated']} updated, {stats['removed']} removed, {stats['unchanged']} unchanged)"
    ]
    lines += [
        f"left the index: {root} (the project's example corpus, indexed only while the index held nothing of"
        " yours; name it in `swarm index build` to keep it)"
        for root in stats["dropped_roots"]
    ]
    for change in ("added", "updated", "removed"):
        if stats[f"{change}_paths"]:
            lines.append(f"{change}:")
            lines += _first([f"  {path}" for path in stats[f"{change}_paths"]])
    problems = stats["problems"]
    missing = [p for p in problems if p["kind"] not in ("partial", "not_read")]
    if missing:
        no_text = sum(p["kind"] == "no_text" for p in missing)
        lines.append(f"not indexed: {len(missing)} file(s)" + (f", {no_text} PDF(s) with no text layer" if no_text else ""))
    lines += [f"  {p['path']}: {p['reason']}" for p in missing]
    not_read = [p for p in problems if p["kind"] == "not_read"]
    if not_read:
        lines.append(f"skipped, of a type the index does not read: {len(not_read)} file(s)")
        lines += _first([f"  {p['path']}: {p['reason']}" for p in not_read])
    partial = [p for p in problems if p["kind"] == "partial"]
    if partial:
        lines.append(f"indexed with pages lacking text: {len(partial)} file(s)")
        lines += [f"  {p['path']}: {p['reason']}" for p in partial]
    return "\n".join(lines)


def cmd_build(args: argparse.Namespace) -> int:
    from core.config import config_path, load_config
    from providers.search.local_index import build_index_from_config

    config = load_config(config_path(args.config))
    progress = None if args.quiet else ProgressReport(sys.stderr)
    try:
        stats = build_index_from_config(config, args.paths or None, reset=args.reset, progress=progress)
    finally:
        if progress:
            progress.close()
    print(json.dumps(stats.to_dict(), indent=2) if args.json else _summary(stats.to_dict()))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from core.config import config_path, load_config, state_dir
    from providers.search.index_store import describe
    from providers.search.local_index import LocalIndexSearch

    config = load_config(config_path(args.config))
    settings = config.providers.search.backends.get("local") or {}
    backend = LocalIndexSearch.from_config("local", dict(settings), state_dir=state_dir())
    info = describe(backend.index_path, backend.shipped)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    kinds = ", ".join(
        f"{k}: {v['documents']}" + (f" ({v['pages']} pages)" if v["pages"] else "") for k, v in info["by_kind"].items()
    )
    print(f"index {info['index_path']}: {info['documents']} documents" + (f" ({kinds})" if kinds else ""))
    roots = [root + (" (the example corpus, until you index your own)" if root in info["fallback_roots"] else "")
             for root in info["roots"]]
    print(f"roots: {', '.join(roots) or '(none yet)'}")
    not_read = [p for p in info["problems"] if p.get("kind") == "not_read"]
    others = [p for p in info["problems"] if p.get("kind") != "not_read"]
    if others:
        print(f"not (fully) indexed: {len(others)} file(s), {info['no_text']} PDF(s) with no text layer")
        print("\n".join(_first([f"  {problem['path']}: {problem['reason']}" for problem in others])))
    if 0 < len(not_read) <= _NAMED:
        print(f"skipped, of a type the index does not read: {len(not_read)} file(s)")
        print("\n".join(f"  {problem['path']}: {problem['reason']}" for problem in not_read))
    elif not_read:  # a folder of code or images beside the notes: 1,500 lines, one a file
        suffixes: dict[str, int] = {}
        for problem in not_read:
            suffix = Path(problem["path"]).suffix.lower() or "(no extension)"
            suffixes[suffix] = suffixes.get(suffix, 0) + 1
        said = ", ".join(f"{suffix}: {count}" for suffix, count in sorted(suffixes.items(), key=lambda kv: -kv[1]))
        print(f"skipped, of a type the index does not read: {len(not_read)} file(s) ({said}); --json lists them")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``index build`` and ``index stats`` on the ``swarm`` subparsers."""
    raw = argparse.RawDescriptionHelpFormatter
    index = sub.add_parser("index", help="the local search index over your own documents", formatter_class=raw,
                           description="The local search index over your own documents.",
                           epilog="examples:\n  swarm index build ~/papers\n  swarm index stats")
    commands = index.add_subparsers(dest="index_command", required=True, metavar="{build,stats}")
    p = commands.add_parser("build", help="build or update (incrementally) the local index; default: configured paths",
                            description="Build or update (incrementally) the local index; default: configured paths.",
                            epilog="example:\n  swarm index build ~/papers ~/notes", formatter_class=raw)
    p.add_argument("paths", nargs="*", help="folders or files (default: providers.search.backends.local.paths; while"
                   " that is the example docs/corpus, the folders you indexed before, if any)")
    p.add_argument("--reset", action="store_true", help="start the index over")
    p.add_argument("--json", action="store_true", help="print what the build did as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(fn=cmd_build)
    p = commands.add_parser("stats", help="documents and pages by format, and the files that could not be indexed",
                            description="Documents and pages by format, and the files that could not be indexed.",
                            epilog="example:\n  swarm index stats --json", formatter_class=raw)
    p.add_argument("--json", action="store_true", help="print the stats as JSON")
    p.set_defaults(fn=cmd_stats)
