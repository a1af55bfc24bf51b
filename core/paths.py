"""Where this installation keeps its state: one rule, used by config interpolation and code.

``state_dir()``: ``$SWARM_HOME`` (made absolute: a client such as Claude Desktop starts the
server in a folder of its own choosing), else ``$XDG_CACHE_HOME/runpod-swarm``, else
``~/.cache/runpod-swarm``. A user with neither ``HOME`` nor a home directory (a container run
as a bare uid) gets a ``ConfigError`` naming the variables to set, not Python's
``RuntimeError``. ``models_dir_default()`` is ``$SWARM_MODELS_DIR`` else ``<state>/models``.
``unwritable_state(paths)`` says which folders cannot be made or written, so a door refuses to
start with the path and the fix instead of failing every job as an internal error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from core.errors import ConfigError

_NO_HOME = ("HOME is unset and this user has no home directory: set SWARM_HOME (and SWARM_MODELS_DIR) to a"
            " writable folder, or HOME")


def _expand(value: str, key: str) -> Path:
    try:
        return Path(value).expanduser().absolute()
    except RuntimeError:  # "Could not determine home directory."
        raise ConfigError(_NO_HOME, key=key) from None


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where jobs, checkpoints, threads, logs and the local index live unless config says
    otherwise; ``env``: the variables to read (default: this process's)."""
    env = os.environ if env is None else env
    if env.get("SWARM_HOME"):
        return _expand(env["SWARM_HOME"], "SWARM_HOME")
    if env.get("XDG_CACHE_HOME", "").startswith("/"):
        return Path(env["XDG_CACHE_HOME"]) / "runpod-swarm"
    return _expand("~/.cache/runpod-swarm", "SWARM_HOME")


def models_dir_default() -> Path:
    """The image model store: ``$SWARM_MODELS_DIR``, else ``<state_dir>/models``."""
    if os.environ.get("SWARM_MODELS_DIR"):
        return _expand(os.environ["SWARM_MODELS_DIR"], "SWARM_MODELS_DIR")
    return state_dir() / "models"


def unwritable_state(folders: Iterable[tuple[str, Path]], *, create: bool = True) -> list[tuple[str, str]]:
    """``(config key, why)`` for each folder that cannot be made or written (each folder once).
    ``create=False`` (``config check``, a reload of an edited file) makes nothing: a folder not
    there yet is judged by the nearest one that is (a file, read-only, a filesystem of no size)."""
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for key, folder in folders:
        if folder in seen:
            continue
        seen.add(folder)
        if not create:
            if (why := _cannot_make(folder)) is not None:
                problems.append((key, why))
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except FileExistsError:
            problems.append((key, f"cannot use {folder}: it is a file, not a folder"))
        except OSError as exc:
            problems.append((key, f"cannot use {folder} ({exc.strerror or type(exc).__name__})"))
    return problems


def _cannot_make(folder: Path) -> str | None:
    """Why ``folder`` could not be made or written, judged without making anything; ``None``: it can."""
    nearest = folder
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        return f"cannot use {folder}: {nearest} is a file, not a folder"
    nothing = False
    if nearest != folder:  # to be made: /proc, /sys take none (a folder that is there is not judged by size)
        try:
            nothing = os.statvfs(nearest).f_blocks == 0
        except OSError:
            pass
    if nothing or not os.access(nearest, os.W_OK | os.X_OK):
        return f"cannot use {folder} ({'nothing can be made under ' + str(nearest) if nearest != folder else 'Permission denied'})"
    return None
