"""A local image file, the MCP tools' ``path``: its name read as an absolute path, then the file
checked before and while it is read (inside the allowed folders, a regular file, within
``max_input_bytes``, an image by its magic bytes, and optionally its declared size and a decode).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import InputError
from providers.image.header import sniff_format
from providers.image.inputs import ANY_DATA_URL, UNREADABLE, checked_header, unreadable
from providers.image.quiet import quiet_pillow

if TYPE_CHECKING:
    from providers.image.limits import ImageLimits

#: longest path taken (Linux's PATH_MAX)
MAX_PATH_CHARS = 4096
_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,5}$")


def looks_like_path(text: str) -> bool:
    """Whether ``text``, given as an image's base64, is rather a file's name (``/home/me/cat.png``,
    ``~/cat.png``, ``C:\\cat.png``, ``file:///...``, ``cat.png``): said so, it tells a caller to
    give it as ``path``. An image's base64 that starts with ``/`` (JPEG's ``/9j/``) is not one."""
    text = text.strip()
    if not text or len(text) > MAX_PATH_CHARS or ANY_DATA_URL.match(text):
        return False
    if text[:5].lower() == "file:" or text.startswith("~") or _WINDOWS_PATH.match(text):
        return True
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):  # not base64: a name if it has a folder or an extension
        return "/" in text or "\\" in text or _EXTENSION.search(text) is not None
    return text.startswith("/") and sniff_format(data) is None


def local_path(text: str, *, field: str = "path", base: Path | None = None) -> Path:
    """``text`` (an absolute path, ``~/...``, or a ``file://`` URL) as an absolute ``Path``; a
    relative path is refused, or names a file in ``base`` when the door has one (the command line's
    working folder)."""
    text = text.strip()
    if not text:
        raise InputError("is empty", field=field)
    if len(text) > MAX_PATH_CHARS:
        raise InputError(f"is {len(text)} characters; the limit is {MAX_PATH_CHARS}", field=field)
    if "\x00" in text:
        raise InputError("holds a NUL character", field=field)
    is_url = text[:5].lower() == "file:"
    if is_url:
        parsed = urllib.parse.urlsplit(text)
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"a file:// URL of host {parsed.netloc!r}; only files on the machine the MCP server"
                             " runs on can be read", field=field)
        text = urllib.parse.unquote(parsed.path)
        if os.name == "nt" and re.match(r"^/[A-Za-z]:", text):  # file:///C:/Users/... -> C:/Users/...
            text = text[1:]
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute() and not is_url:
        path = base / path
    if not path.is_absolute():
        raise InputError(f"{text!r} is not an absolute path; give the full path (/home/me/cat.png,"
                         " C:\\Users\\me\\cat.png) or a file:// URL", field=field)
    return path


def _listed(roots: Sequence[str], most: int = 5) -> str:
    """``roots`` for an error: the first ``most`` as given, then how many more."""
    shown = ", ".join(str(r) for r in roots[:most]) or "none"
    return shown + (f" and {len(roots) - most} more" if len(roots) > most else "")


def read_file(text: str, limits: ImageLimits, *, roots: Sequence[str] | None = None, field: str = "path",
              base: Path | None = None, check_image: bool = True) -> bytes:
    """The bytes of the image file ``text`` names (``local_path``), checked before and while it is
    read: inside one of ``roots`` once every link is followed (``None``: anywhere), a regular file
    (not a folder, device or pipe: opened without blocking, then checked on the open file), at most
    ``limits.max_input_bytes``, an image by its magic bytes, and, with ``check_image``, its declared
    size and a whole decode. Without it (one image of a batch), a file that is an image by its
    first bytes but no good one fails alone in the job, as the same bytes given as ``image`` do; a
    file that is no image at all (``~/.aws/credentials``, ``/proc/self/environ``) never enters a
    job: its bytes were stored with it, sent to the runner, and quoted in its error.

    Raises:
        InputError: naming ``field``, the file, and what was wrong.
    """
    path = local_path(text, field=field, base=base)
    real = Path(os.path.realpath(path))
    root = None
    if roots is not None:
        root = next((r for r in (Path(os.path.realpath(Path(r).expanduser())) for r in roots) if real.is_relative_to(r)), None)
        if root is None:
            raise InputError(f"{path} is outside the folders this server may read (mcp.file_roots: {_listed(roots)});"
                             " copy the file into one of them, or send it as url, key or base64", field=field)
    try:
        fd = _open_within(real, root)
    except FileNotFoundError:
        raise InputError(f"no such file: {path}", field=field) from None
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied", field=field) from None
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror or type(exc).__name__}", field=field) from None
    try:
        data = _read_regular(fd, path, limits.max_input_bytes, field)
    finally:
        os.close(fd)
    if not data:
        raise InputError(f"{path} is empty", field=field)
    kind = sniff_format(data)
    if kind is None or kind not in limits.formats:
        raise InputError(f"{path} is not a supported image (by its first bytes); formats: {', '.join(limits.formats)}",
                         field=field)
    if not check_image:
        return data
    with quiet_pillow():
        img = checked_header(data, kind, limits, field)  # a size past the limit is the path's, not a job's "image"
        try:  # and so is a file cut short: decoded once here, it is refused before a job, naming the path
            img.seek(0)
            img.load()
        except UNREADABLE as exc:
            raise InputError(f"{path} is a {unreadable(exc)} {kind} image", field=field) from None
        finally:
            img.close()
    return data


#: not blocking (a pipe would wait for a writer), not following a link at the last name
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


def _open_within(real: Path, root: Path | None) -> int:
    """``real`` (links resolved) opened for reading. Inside an allowed ``root``, every folder below
    it is opened in turn by its name in the one before, never following a link: a folder swapped
    for a link to elsewhere (``/etc``) after ``realpath`` fails (ELOOP, ENOTDIR) instead of being
    read through. Where the system cannot open by folder (``dir_fd``), the name is opened whole."""
    if root is None or os.open not in os.supports_dir_fd or not _FOLDER_FLAGS & getattr(os, "O_NOFOLLOW", 0):
        return os.open(real, _FILE_FLAGS)
    *folders, name = real.relative_to(root).parts or ("",)
    at = os.open(root, _FOLDER_FLAGS)
    try:
        for folder in folders:
            below = os.open(folder, _FOLDER_FLAGS, dir_fd=at)
            os.close(at)
            at = below
        return os.open(name, _FILE_FLAGS, dir_fd=at) if name else os.dup(at)
    finally:
        os.close(at)


def _read_regular(fd: int, path: Path, limit: int, field: str) -> bytes:
    """Up to ``limit`` bytes of the open file ``fd``, refused unless it is a regular file that small."""
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path} is a folder, not a file", field=field)
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a regular file (a device, pipe or socket)", field=field)
    if info.st_size > limit:
        raise InputError(f"{path} is {info.st_size:,} bytes; the limit is {limit:,} (providers.image.max_input_bytes)",
                         field=field)
    chunks, size = [], 0
    while size <= limit:  # the file may have grown since fstat
        try:
            chunk = os.read(fd, limit + 1 - size)
        except OSError as exc:  # /proc/self/mem (EIO), a file on a failing disk: it was the call's crash
            raise InputError(f"cannot read {path}: {exc.strerror or type(exc).__name__}", field=field) from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise InputError(f"{path} is over {limit} bytes (providers.image.max_input_bytes)", field=field)
    return b"".join(chunks)
