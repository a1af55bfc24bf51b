"""``swarm doctor``'s output: one aligned line per finding (or JSON), the overall status, the exit code."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from core.redact import redact, redact_data
from swarm.doctor import doctor
from swarm.doctor_finding import Finding, Status

if TYPE_CHECKING:
    import argparse

_LABELS: dict[Status, str] = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "info": "INFO"}


def overall(findings: list[Finding]) -> Status:
    statuses = {f.status for f in findings}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"


def format_lines(findings: list[Finding]) -> list[str]:
    """One aligned line per finding, then a count per status; secrets redacted."""
    width = max((len(f.check) for f in findings), default=0)
    lines = [
        f"{_LABELS[f.status]:<6}{f.check:<{width}}  {f.detail}" + (f"; fix: {f.fix}" if f.fix else "")
        for f in findings
    ]
    counts = ", ".join(f"{sum(f.status == s for f in findings)} {s}" for s in _LABELS)
    return [redact(line) for line in [*lines, f"doctor: {overall(findings).upper()} ({counts})"]]


def cmd_doctor(args: argparse.Namespace) -> int:
    """``swarm doctor [--json] [--quick]``: print the findings; exit 1 when any check FAILs."""
    findings = asyncio.run(doctor(args.config, canary=not args.quick))
    if args.json:
        report = {"status": overall(findings), "findings": [asdict(f) for f in findings]}
        print(json.dumps(redact_data(report), indent=2, ensure_ascii=False))
    else:
        print("\n".join(format_lines(findings)))
    return 1 if overall(findings) == "fail" else 0
