"""Supply chain: every locked requirement is pinned and hash-checked, the malicious litellm
releases are named nowhere and not installed, and no unexpected ``.pth`` start-up hook sits in
site-packages (a malicious litellm release, CVE-2026-33634, shipped its credential stealer as a
``.pth`` file)."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import re
import site
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCKS = sorted((ROOT / "requirements").glob("*.lock"))
INPUTS = sorted((ROOT / "requirements").glob("*.in"))
MALICIOUS_LITELLM = ("1.82.7", "1.82.8")
#: .pth files a clean install of this project leaves: setuptools' shim, virtualenv/uv's own,
#: and the editable install of this project. Anything else runs code at every interpreter start.
KNOWN_PTH = ("distutils-precedence.pth", "_virtualenv.pth", "__editable__.runpod_swarm-*.pth")
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(\[[A-Za-z0-9,._\-]+\])?==[A-Za-z0-9.+!_\-]+(\s*;.*)?$")


def _entries(lock: Path) -> list[str]:
    """Requirement entries with their backslash continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", lock.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_there_are_locks() -> None:
    assert {p.name for p in LOCKS} >= {"main.lock", "build.lock"}


@pytest.mark.parametrize("lock", LOCKS, ids=[p.name for p in LOCKS])
def test_every_locked_line_pins_an_exact_version_with_a_sha256_hash(lock: Path) -> None:
    bad = []
    for entry in _entries(lock):
        requirement, *options = re.split(r"\s+(?=--)", entry)
        hashes = [o for o in options if o.startswith("--hash=sha256:") and len(o) == len("--hash=sha256:") + 64]
        if requirement.startswith("-") or not _PIN.match(requirement) or not hashes or len(hashes) != len(options):
            bad.append(entry[:120])
    assert not bad, f"{lock.name}: entries not pinned with == and --hash=sha256: {bad}"


@pytest.mark.parametrize("path", LOCKS + INPUTS, ids=[p.name for p in LOCKS + INPUTS])
def test_no_lock_or_input_names_a_malicious_litellm(path: Path) -> None:
    for entry in _entries(path):
        if re.match(r"litellm\b", entry, re.IGNORECASE):
            assert not any(v in entry for v in MALICIOUS_LITELLM), f"{path.name}: {entry[:80]}"
            if path.suffix == ".in":
                assert "==" in entry, f"{path.name}: litellm must be pinned exactly, not {entry[:80]!r}"


def test_installed_litellm_is_not_a_malicious_release() -> None:
    try:
        version = importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("litellm is not installed")
    assert version not in MALICIOUS_LITELLM


def test_no_unexpected_pth_files_in_site_packages() -> None:
    folders = {Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["platlib"]), *map(Path, site.getsitepackages())}
    found = sorted({p.name for folder in folders if folder.is_dir() for p in folder.glob("*.pth")})
    unexpected = [name for name in found if not any(fnmatch.fnmatch(name, known) for known in KNOWN_PTH)]
    assert not unexpected, (
        f"unexpected .pth start-up hooks {unexpected}: find the package that installed them; "
        "if it is legitimate, add it to KNOWN_PTH in this test"
    )
