"""``scripts/setup`` before it installs anything: the Python it needs, and a broken .venv made
again; and its install of the project itself, which says nothing when all is well."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def clone_with_setup(tmp_path: Path) -> Path:
    """A folder with only ``scripts/setup`` (it stops at the missing locks, after its checks)."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "setup", clone / "scripts" / "setup")
    return clone


def run_setup(clone: Path, python: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": python}
    return subprocess.run([str(clone / "scripts" / "setup")], env=env, capture_output=True, text=True, timeout=300)


def test_another_python_is_named_with_the_fix_before_anything_is_made(tmp_path: Path) -> None:
    """PYTHON=python3.12 left a 3.12 .venv and a ResolutionImpossible about torch; rerunning with
    3.11 kept that .venv."""
    clone = clone_with_setup(tmp_path)
    fake = tmp_path / "python3.12"
    fake.write_text('#!/bin/sh\ncase "$2" in *platform*) echo 3.12.1;; *) exit 1;; esac\n')
    fake.chmod(0o755)
    done = run_setup(clone, str(fake))
    assert done.returncode == 1
    assert "needs Python 3.11" in done.stderr and "is 3.12.1" in done.stderr and "python3.11-venv" in done.stderr
    assert not (clone / ".venv").exists()


def test_a_half_made_venv_is_made_again(tmp_path: Path) -> None:
    """Setup killed while `python -m venv` ran left bin/python without pip: every rerun failed
    with 'No module named pip'."""
    clone = clone_with_setup(tmp_path)
    (clone / ".venv" / "bin").mkdir(parents=True)
    base = getattr(sys, "_base_executable", sys.executable)
    (clone / ".venv" / "bin" / "python").symlink_to(base)  # no pyvenv.cfg: not this folder's venv
    done = run_setup(clone, base)
    assert "making it again" in done.stderr, done.stderr
    assert "requirements" in done.stderr and done.returncode != 0  # it went on to the (missing) locks
    check = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c", "import pip, sys; print(sys.prefix)"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and Path(check.stdout.strip()).resolve() == (clone / ".venv").resolve()


#: what pip runs to install the project editable, as pip runs it (pyproject_hooks' _in_process):
#: the warnings the backend gives (a UserWarning or a subclass) are what pip then prints
BUILD_EDITABLE = """
import json, sys, warnings, zipfile
from setuptools import build_meta
dist, report = sys.argv[1:3]  # (the backend sets sys.argv for its own commands)
with warnings.catch_warnings(record=True) as caught:
    name = build_meta.build_editable(dist)
said = [f"{w.category.__name__}: {w.message}" for w in caught if issubclass(w.category, UserWarning)]
wheel = zipfile.ZipFile(f"{dist}/{name}")
made = {n: wheel.read(n).decode() for n in wheel.namelist() if "/" not in n}
json.dump({"warnings": said, "top_level": made}, open(report, "w"))
"""


def test_the_project_installs_editable_as_a_plain_path_without_a_warning(tmp_path: Path) -> None:
    """Every fresh setup printed setuptools' "BuildBackendWarning: Editable installation. ...
    Please be careful with folders in your working directory with the same name as your package"
    at ``pip install -e .``: the flat layout, undeclared, was installed as an import hook (a meta
    path finder run at every interpreter start) that setuptools warns about. Declared
    (``package-dir`` in pyproject.toml), it is a .pth file holding the project's folder, no code."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "handler.py"):
        shutil.copy2(ROOT / name, project / name)
    for package in ("core", "swarm", "providers", "graphs", "mcp_server", "bench"):
        shutil.copytree(ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__", "out"))
    (tmp_path / "dist").mkdir()
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-c", BUILD_EDITABLE, str(tmp_path / "dist"), str(report)],
                          cwd=project, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    built = json.loads(report.read_text())
    assert built["warnings"] == []
    [pth] = [name for name in built["top_level"] if name.endswith(".pth")]
    assert Path(built["top_level"][pth].strip()).resolve() == project.resolve()
    assert [name for name in built["top_level"] if name.endswith(".py")] == []  # no finder module to import
