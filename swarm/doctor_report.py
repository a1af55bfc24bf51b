"""``swarm doctor``'s output: one aligned line per finding (or JSON), the overall status, the exit code."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from core.redact import redact, redact_data
from swarm.doctor import doctor
from swarm.doctor_finding import Finding, Status
from swarm.doctor_reach import doctor_loop

if TYPE_CHECKING:
    import argparse

_LABELS: dict[Status, str] = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "info": "INFO"}


def overall(findings: list[Finding]) -> Status:
    """FAIL when any check fails, else WARN when any warns, else OK (INFO lines are options, not faults)."""
    statuses = {f.status for f in findings}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"


def format_lines(findings: list[Finding]) -> list[str]:
    """One aligned line per finding, then a count per status; secrets redacted."""
    width = max((len(f.check) for f in findings), default=0)
    lines = [
        f"{_LABELS[f.status]:<6}{f.check:<{width}}  {f.detail}" + (f"; {f.fix_label}: {f.fix}" if f.fix else "")
        for f in findings
    ]
    counts = ", ".join(f"{sum(f.status == s for f in findings)} {s}" for s in _LABELS)
    return [redact(line) for line in [*lines, f"doctor: {overall(findings).upper()} ({counts})"]]


def cmd_doctor(args: argparse.Namespace) -> int:
    """``swarm doctor [--json] [--quick]``: print the findings; exit 1 when any check FAILs."""
    # its loop resolves names on daemon threads: a lookup a dead DNS server holds past its check's
    # timeout does not hold the exit (asyncio.run waits for the default executor's threads)
    with asyncio.Runner(loop_factory=doctor_loop) as runner:
        findings = runner.run(doctor(args.config, canary=not args.quick))
    if args.json:
        rows = [{"check": f.check, "status": f.status, "detail": f.detail, "fix": f.fix} for f in findings]
        report = {"status": overall(findings), "findings": rows}
        print(json.dumps(redact_data(report), indent=2, ensure_ascii=False))
    else:
        print("\n".join(format_lines(findings)))
    return 1 if overall(findings) == "fail" else 0
