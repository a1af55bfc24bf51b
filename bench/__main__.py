"""``python -m bench``: run every figure against its anchor and write RESULTS.md, results.json, plots.

    python -m bench                      # full run (about 10-15 minutes on 2 cores); the first one builds
                                         # the reference venvs it lacks (RealESRGANer, rembg CLI: minutes)
    python -m bench --setup              # the reference venvs built (again where broken), then a full run
    python -m bench --no-setup           # a full run without building any: their rows say not measured
    python -m bench --quick              # CI: every suite tiny; checks the harness, not speed
    python -m bench --only research,concurrency --out /tmp/bench

RESULTS.md and results.json are rewritten (atomically) as each figure is measured: a run that is
stopped, or a suite cut by its time budget, keeps every finished row and names the others.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.harness import BENCH_DIR, run_all
from bench.results import Run, write_results
from bench.suites import SUITES, select


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; asserts nothing about speed")
    parser.add_argument("--only", action="append", metavar="SUITES",
                        help=f"comma-separated suites: {', '.join(s.name for s in SUITES)}")
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="where RESULTS.md, results.json, plots/ go")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--budget-s", type=float, default=None, help="time budget of the whole run")
    parser.add_argument("--setup", action="store_true",
                        help="first build the reference venvs under .bench-venvs/ (pip; minutes the first time)")
    parser.add_argument("--no-setup", action="store_true",
                        help="build no reference venv, even one a full run lacks (its rows say not measured)")
    args = parser.parse_args(argv)
    lacking = [] if args.quick or args.no_setup else _lacking_venvs(args.only)
    if lacking and not args.setup:
        print(f"bench: building the reference venvs this machine lacks ({', '.join(lacking)}; pip, minutes once):"
              " their anchors carry goal rows (--no-setup skips it)", file=sys.stderr)
    if args.setup or lacking:
        for module in ("bench.ref_realesrganer", "bench.bench_rembg") if args.setup else lacking:
            done = subprocess.run([sys.executable, "-m", module, "--setup", *(["--quick"] if module.endswith("rembg") else [])],
                                  check=False, stdout=subprocess.DEVNULL)
            if done.returncode != 0:
                print(f"{module} --setup failed (exit {done.returncode}); its rows will say not measured",
                      file=sys.stderr)
    def save(run: Run, suite_done: bool) -> None:  # every figure on disk the moment it is measured
        write_results(run, args.out, plots=suite_done and not args.no_plots)

    run = run_all(select(args.only), quick=args.quick, budget_s=args.budget_s, on_update=save)
    files = write_results(run, args.out, plots=not args.no_plots, final=True)
    json.dump({"elapsed_s": run.elapsed_s, "records": len(run.records),
               "files": {k: str(v) for k, v in files.items()}}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


#: suite -> the module whose ``--setup`` builds the reference venv its goal rows are anchored on
_REFERENCE_VENVS = {"image": "bench.ref_realesrganer", "rembg": "bench.bench_rembg"}


def _lacking_venvs(only: list[str] | None) -> list[str]:
    """The setup modules of the reference venvs the selected suites need and this checkout lacks."""
    from bench.ref_realesrganer import python_path
    from bench.rembg_reference import VENV as REMBG_VENV

    present = {"bench.ref_realesrganer": python_path().exists(), "bench.bench_rembg": (REMBG_VENV / "bin" / "rembg").exists()}
    chosen = {suite.name for suite in select(only)}
    return [module for suite, module in _REFERENCE_VENVS.items() if suite in chosen and not present[module]]


if __name__ == "__main__":
    sys.exit(main())
