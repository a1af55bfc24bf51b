"""Image inputs given as local files (``path``), read by the door that runs on the user's machine.

The MCP server and the ``swarm`` command line take an image as ``path`` (an absolute path or a
``file://`` URL) besides ``image`` (base64), ``url`` and ``key``: the door reads the file into
``image``, so the runner, local or a RunPod worker, gets the image as data and needs no access to
this machine's disk. What can be refused before a job exists is refused here: no image at all, a
bad or unreadable path, a file path given as ``image`` or as a ``file://`` url, more than
``MAX_BATCH_IMAGES`` images, a single image over the size limit (a batch's image fails alone,
in its job). Each error names the field as the door's caller wrote it (``prefix``).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import InputError
from providers.image.imageio import ImageLimits, base64_payload, looks_like_path, read_file

#: the folders a ``path`` may be read from, for the field that names it (``None``: any); it may
#: refuse (``InputError``) where the door reads no local file at all
RootsFor = Callable[[str], "list[str] | None"]


def any_file(field: str) -> None:
    """Roots for a door run by the user on their own machine: any file they could open."""
    return None


async def read_local_sources(config: Any, inp: dict[str, Any], roots_for: RootsFor = any_file,
                             prefix: str = "", base: Path | None = None) -> dict[str, Any]:
    """``inp`` (an image action's input: image/path/url/key, or ``images``) with every ``path``
    read into ``image``; the fields of errors start with ``prefix`` (``"input."`` on the command line);
    a relative path names a file in ``base`` (the command line's working folder), else is refused."""
    limits = ImageLimits.from_config(config)
    sources = [inp.get(name) for name in ("image", "path", "url", "key")]
    if inp.get("images") is None and all(source is None for source in sources):
        raise InputError("give one of image, path, url, key (got none)", field=f"{prefix}image")
    if inp.get("images") is not None and inp.get("path"):
        raise InputError("give images or one of image, path, url, key, not both (got images and path)",
                         field=f"{prefix}path")
    others = [name for name in ("image", "url", "key") if inp.get(name)]
    if inp.get("images") is not None and others:  # the dispatcher's "input: ..." named no field, nor path
        raise InputError(f"give images or one of image, path, url, key, not both (got images and {others[0]})",
                         field=f"{prefix}{others[0]}")
    # a client's "unset" path ("") beside images: images are the source
    top = {k: v for k, v in inp.items() if k != "path"} if inp.get("images") is not None and inp.get("path") == "" else inp
    out = await _read_source(limits, top, prefix, roots_for, base)
    if out.get("image"):
        base64_payload(out["image"], limits, field=f"{prefix}image")
    if inp.get("images") is not None:
        from graphs.image.inputs import MAX_BATCH_IMAGES

        images = inp["images"]
        if not isinstance(images, list) or not 1 <= len(images) <= MAX_BATCH_IMAGES:  # before any file is read
            count = f"{len(images)} images" if isinstance(images, list) else "not a list"
            raise InputError(f"{count}; give 1 to {MAX_BATCH_IMAGES} per job (MAX_BATCH_IMAGES)", field=f"{prefix}images")
        for n, item in enumerate(images):
            if isinstance(item, dict) and not any(item.get(name) is not None for name in ("image", "path", "url", "key")):
                raise InputError("give one of image, path, url, key (got none)", field=f"{prefix}images[{n}].image")
        out["images"] = [await _read_source(limits, item, f"{prefix}images[{n}].", roots_for, base) if isinstance(item, dict)
                         else item for n, item in enumerate(images)]
    return out


async def _read_source(limits: ImageLimits, source: dict[str, Any], prefix: str, roots_for: RootsFor,
                       base: Path | None) -> dict[str, Any]:
    """``source`` (one image's image/url/key/path) with its file read into ``image``."""
    rest = {k: v for k, v in source.items() if k != "path"}
    path, given = source.get("path"), [name for name in ("image", "url", "key") if source.get(name)]
    if path is None and len(given) > 1:  # the dispatcher's "input: ..." named no field, nor path
        raise InputError(f"give one of image, path, url, key (got {' and '.join(given)})", field=f"{prefix}{given[0]}")
    if path is None or (path == "" and given):  # an empty field beside a filled one: a client's "unset"
        image = rest.get("image")
        if isinstance(image, str) and image and looks_like_path(image):
            raise InputError("looks like a file's path; give a local file as path (an absolute path or a file://"
                             " URL); image takes base64 or a data: URL", field=f"{prefix}image")
        if str(rest.get("url") or "").strip()[:5].lower() == "file:":
            raise InputError("a file:// URL names a local file: give it as path; url takes http(s)", field=f"{prefix}url")
        return rest
    if given:
        raise InputError(f"give one of image, path, url, key (got path and {', '.join(given)})", field=f"{prefix}path")
    if not isinstance(path, str):
        raise InputError("must be a string: an absolute path or a file:// URL", field=f"{prefix}path")
    roots = roots_for(f"{prefix}path")
    # one image of a batch that is read but no good image fails alone in its job (README: "an image
    # that cannot be decoded fails alone"); a truncated file failed the whole batch here
    alone = "images[" in prefix
    data = await asyncio.to_thread(read_file, path, limits, roots=roots, field=f"{prefix}path", base=base,
                                   check_image=not alone)
    # the job names this image's errors (a file cut short, a deadline) path, as the caller wrote it
    return {**rest, "image": base64.b64encode(data).decode(), "given_as": "path"}
