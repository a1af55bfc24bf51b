"""Local filesystem storage, confined to one root folder.

Writes go to a temporary file in the target folder, are fsynced, then renamed into place, so a
reader never sees half an object. Create-only writes use ``os.link``, which fails atomically
when the name exists. Every key is checked by ``keys.check_key`` and its resolved path must lie
under the resolved root, so a symlink planted inside the root cannot lead out of it.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio

from core.errors import ConfigError, InputError, ProviderUnavailable
from providers.base import StoredObject
from providers.storage.keys import TEMP_MARK, check_key, check_prefix, guess_content_type, too_large

#: a folder this process may not write (or read): another folder is the fix, not a run again
_NOT_ALLOWED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
#: the root cannot be made there at all (a file stands in its path) or may not be
_NO_ROOT = _NOT_ALLOWED | {errno.ENOTDIR, errno.EEXIST}


class LocalStorage:
    """A ``StorageProvider`` on a local folder.

    Args:
        root: the folder holding every object (created on first write).
        public_base_url: when set, ``url(key)`` is ``public_base_url + key`` (e.g. a static file
            server in front of the folder); otherwise a ``file://`` URI.
        root_key: the config key that sets ``root``, which an error about the folder names.
    """

    name = "local"

    def __init__(self, root: str | os.PathLike[str], *, public_base_url: str | None = None,
                 root_key: str = "providers.storage.backends.local.root") -> None:
        self.root = Path(root).expanduser().absolute()
        self.public_base_url = public_base_url or None
        self.root_key = root_key

    @classmethod
    def from_config(
        cls, name: str, settings: Mapping[str, Any], *, state_dir: Path | None = None, **_deps: object
    ) -> LocalStorage:
        """Build from ``providers.storage.backends.<name>`` (keys: root, public_base_url);
        without ``root`` the objects live in ``state_dir/artifacts``.

        Raises:
            ConfigError: ``root`` is not a path, or neither ``root`` nor ``state_dir`` is given.
        """
        root = settings.get("root") or (state_dir / "artifacts" if state_dir else None)
        if not root:
            raise ConfigError("root is not set; name the storage folder", key=f"providers.storage.backends.{name}.root")
        if not isinstance(root, str | os.PathLike):
            raise ConfigError("root must be a folder path", key=f"providers.storage.backends.{name}.root")
        return cls(root, public_base_url=settings.get("public_base_url"), root_key=f"providers.storage.backends.{name}.root")

    # --- paths ------------------------------------------------------------------------------

    def _real_root(self) -> Path:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # (a file where the folder should be is an OSError too)
            raise self._unavailable(f"cannot create the storage folder {str(self.root)!r}", exc, _NO_ROOT) from None
        return self.root.resolve()

    def _unavailable(self, doing: str, exc: OSError, folder_errors: frozenset[int] = _NOT_ALLOWED) -> ProviderUnavailable:
        """``doing`` failed with ``exc``; where the folder is the cause, with the setting to change
        (a full disk has none: space freed, the same job goes on)."""
        fix = f"; set {self.root_key} to a folder this process can write" if exc.errno in folder_errors else ""
        return ProviderUnavailable("local", f"{doing}: {exc.strerror or type(exc).__name__}{fix}")

    def _path(self, key: str) -> Path:
        """The confined path of ``key``; ``InputError`` when it resolves outside the root."""
        check_key(key)
        root = self._real_root()
        path = (root / key).resolve()
        if path == root or not path.is_relative_to(root):
            raise InputError(f"storage key {key!r} leads outside the storage root", field="key")
        return path

    def _key_of(self, path: Path, root: Path) -> str:
        return path.relative_to(root).as_posix()

    # --- sync bodies, run in a worker thread -------------------------------------------------

    def _put_sync(self, key: str, data: bytes, overwrite: bool) -> int:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InputError(
                f"storage key {key!r}: a parent of it is an object, not a folder", field="key"
            ) from None
        except OSError as exc:
            raise self._unavailable(f"cannot write {key!r} in {str(self.root)!r}", exc) from None
        # re-check: mkdir may have walked through a symlink created meanwhile
        if not path.parent.resolve().is_relative_to(self._real_root()):
            raise InputError(f"storage key {key!r} leads outside the storage root", field="key")
        tmp = path.parent / f"{TEMP_MARK}{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                if path.is_dir():
                    raise InputError(f"storage key {key!r} names a folder", field="key")
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path, follow_symlinks=False)
                except FileExistsError:
                    raise InputError(f"{key!r} already exists and overwrite is off", field="key") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # the key, not the disk: a part of it over the file system's 255 bytes
                raise InputError(f"storage key {key[:80]!r}... has a part too long for a file name"
                                 " (255 bytes between slashes)", field="key") from None
            raise self._unavailable(f"cannot write {key!r} in {str(self.root)!r}", exc) from None
        finally:
            tmp.unlink(missing_ok=True)
        return len(data)

    def _get_sync(self, key: str, max_bytes: int | None = None) -> bytes:
        path = self._path(key)
        try:  # not blocking: a pipe planted in the folder waited for a writer, a worker thread held for good
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise InputError(f"no object {key!r} in storage", field="key") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise InputError(f"no object {key[:80]!r}... in storage (a part of the key is over 255 bytes)",
                                 field="key") from None
            raise self._unavailable(f"cannot read {key!r} in {str(self.root)!r}", exc) from None
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):  # Linux opens a folder read-only; reading it fails
            os.close(fd)
            raise InputError(f"no object {key!r} in storage (it is a folder)", field="key")
        if not stat.S_ISREG(info.st_mode):  # a pipe, socket or device: no object this store wrote
            os.close(fd)
            raise InputError(f"no object {key!r} in storage (not a regular file)", field="key")
        if max_bytes is not None and info.st_size > max_bytes:
            os.close(fd)
            raise too_large(info.st_size, max_bytes)
        with os.fdopen(fd, "rb") as handle:
            return handle.read() if max_bytes is None else handle.read(max_bytes + 1)

    def _list_sync(self, prefix: str) -> list[StoredObject]:
        root = self._real_root()
        found: list[StoredObject] = []
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                if name.startswith(TEMP_MARK):
                    continue
                path = Path(folder) / name
                if path.is_symlink():
                    continue
                key = self._key_of(path, root)
                if key.startswith(prefix):
                    try:
                        info = path.stat()
                    except FileNotFoundError:  # deleted since the folder was read: not listed
                        continue
                    found.append(StoredObject(key=key, size=info.st_size, content_type=guess_content_type(key),
                                              modified=info.st_mtime))
        return sorted(found, key=lambda o: o.key)

    def _delete_sync(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            raise InputError(f"storage key {key!r} names a folder", field="key") from None
        except NotADirectoryError:  # a part of the key is an object: no such key, nothing to delete
            return
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # no such key can exist: nothing to delete
                return
            raise self._unavailable(f"cannot delete {key!r} in {str(self.root)!r}", exc) from None

    def _exists_sync(self, key: str) -> bool:
        path = self._path(key)
        try:
            info = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                return False
            raise self._unavailable(f"cannot look at {key!r} in {str(self.root)!r}", exc) from None
        return stat.S_ISREG(info.st_mode)

    # --- StorageProvider ---------------------------------------------------------------------

    async def put(
        self, key: str, data: bytes, content_type: str | None = None, *, overwrite: bool = True
    ) -> StoredObject:
        """Store ``data`` under ``key`` atomically; ``overwrite=False`` refuses an existing key."""
        size = await anyio.to_thread.run_sync(self._put_sync, key, bytes(data), overwrite)
        return StoredObject(
            key=key, size=size, content_type=content_type or guess_content_type(key), url=await self.url(key)
        )

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``InputError`` when there is none."""
        return await anyio.to_thread.run_sync(self._get_sync, key)

    async def get_at_most(self, key: str, max_bytes: int) -> bytes:
        """``get``, refusing an object over ``max_bytes`` from its size before reading it."""
        data = await anyio.to_thread.run_sync(self._get_sync, key, max_bytes)
        if len(data) > max_bytes:  # it grew since its size was read
            raise too_large(len(data), max_bytes)
        return data

    async def exists(self, key: str) -> bool:
        return await anyio.to_thread.run_sync(self._exists_sync, key)

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        await anyio.to_thread.run_sync(self._delete_sync, key)

    async def list(self, prefix: str = "") -> list[StoredObject]:
        """Objects whose key starts with ``prefix``, sorted by key."""
        return await anyio.to_thread.run_sync(self._list_sync, check_prefix(prefix))

    async def url(self, key: str, expires_s: int = 3600) -> str:
        """``public_base_url + key`` when configured, else a ``file://`` URI (no expiry)."""
        path = await anyio.to_thread.run_sync(self._path, key)
        if self.public_base_url:
            return self.public_base_url.rstrip("/") + "/" + quote(key)
        return path.as_uri()
