"""``precision.json``: the decisions ``precision.AutoPrecision`` measured, one per machine and model.

A JSON object ``{"decisions": {key: decision}}``. Writers in several processes (workers sharing
a models folder) merge: each takes an exclusive ``flock`` on a sidecar ``precision.json.lock``
around read, merge and replace (where ``fcntl`` exists), and replaces the file in one step, so
a reader never sees half a file and no writer drops another's entry. An entry this version cannot
read is skipped (and kept in the file for the version that wrote it); a corrupt file is logged and
measured again. The file is created with the mode of any new file (``0o666`` less the umask).

A measurement holds ``measuring``'s lock, an exclusive ``flock`` on a sidecar of its own
(``precision.json.<machine hash>.measuring``), so processes measuring at once on one machine
take turns instead of timing each other's load. The kernel releases a lock when its holder dies,
killed or not. The holder removes the sidecar before it lets go, and a waiter that then gets the
lock of a file no longer at that path opens the path again, so two processes never hold locks on
two files at once. A sidecar left by a holder that was killed (nobody holds its lock: it is
provably dead) is removed by the next measurement, or by ``sweep_stale`` at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; writes stay atomic, a race can drop an entry
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("providers.image.precision")

T = TypeVar("T")

#: the unreadable files this process has warned of (``DecisionCache._raw``), until read whole again
_WARNED: set[str] = set()


class DecisionCache:
    """The decisions file at ``path``; ``parse`` turns one stored entry into a decision."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, parse: Callable[[dict[str, Any]], T]) -> dict[str, T]:
        """Every readable entry; an unreadable one is logged and skipped, not the whole file."""
        decisions: dict[str, T] = {}
        for key, value in self._raw().items():
            try:
                decisions[key] = parse(value)
            except (TypeError, ValueError, AttributeError) as exc:
                log.warning("ignoring unreadable entry %r of the precision cache %s (%s); measuring it again",
                            key, self.path, type(exc).__name__)
        return decisions

    def store(self, key: str, value: dict[str, Any]) -> None:
        """Set ``key`` to ``value``, keeping every other entry; logged, never raised, on failure."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                decisions = self._raw()
                decisions[key] = value
                self._replace(json.dumps({"decisions": decisions}, indent=2, sort_keys=True))
        except OSError as exc:
            log.warning("could not write the precision cache %s (%s); this process keeps the decision",
                        self.path, exc)

    @contextlib.contextmanager
    def measuring(self, machine: str, wait_s: float, *, poll_s: float = 0.1,
                  on_wait: Callable[[], None] | None = None,
                  stopped: Callable[[], bool] | None = None) -> Iterator[bool]:
        """Hold the measurement lock of ``machine`` (a text naming this machine): yields True once
        held, False when another process held it for ``wait_s`` seconds, or until ``stopped()``
        (this process is stopping); ``on_wait`` is called once when it has to wait. Where no lock can be taken (no ``fcntl``, an unwritable folder,
        a filesystem without ``flock``) it yields True at once, logged: measuring unlocked, as
        before locks, beats not measuring."""
        if fcntl is None:
            yield True
            return
        digest = hashlib.sha256(machine.encode()).hexdigest()[:12]
        lock_path = self.path.parent / f"{self.path.name}.{digest}.measuring"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, held = _acquire_file(lock_path, wait_s, poll_s, on_wait, stopped)
        except OSError as exc:
            log.warning("could not open the measurement lock %s (%s); measuring without it", lock_path, exc)
            yield True
            return
        try:
            yield held
        finally:
            if held:
                _unlink_if_same(fd, lock_path)  # before the lock goes: a waiter then sees it is gone
            os.close(fd)  # closing releases the lock

    def sweep_stale(self) -> list[Path]:
        """Remove the measurement lock files beside the cache that no live process holds (left by
        a holder that was killed: a lock is released when its holder dies); returns those removed.
        One held now (a measurement in flight) stays. Nothing is logged but what it removes."""
        removed: list[Path] = []
        if fcntl is None:
            return removed
        for lock_path in sorted(self.path.parent.glob(f"{self.path.name}.*.measuring")):
            try:
                fd = os.open(lock_path, os.O_RDWR)
            except OSError:
                continue  # gone meanwhile, or not ours to open
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _unlink_if_same(fd, lock_path):
                    removed.append(lock_path)
            except OSError:
                pass  # held by a live measurement (or no flock here): it stays
            finally:
                os.close(fd)
        if removed:
            log.info("removed %d measurement lock file(s) left by a stopped process: %s", len(removed),
                     ", ".join(p.name for p in removed))
        return removed

    def problem(self) -> str | None:
        """What makes the file unreadable (``JSONDecodeError: ...``, ``no decisions object``), or
        None when it is readable or absent. Logs nothing."""
        return self._read()[1]

    def _raw(self) -> dict[str, Any]:
        decisions, problem = self._read()
        if problem is None:
            _WARNED.discard(str(self.path))  # readable again: a later corruption is news
        elif str(self.path) not in _WARNED:  # once while it stays so: ``swarm doctor`` reads it per model
            _WARNED.add(str(self.path))
            log.warning("ignoring unreadable precision cache %s (%s); measuring again", self.path, problem)
        return decisions

    def _read(self) -> tuple[dict[str, Any], str | None]:
        """The decisions object of the file (``{}`` when absent or unreadable) and what made it unreadable."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, None
        except (OSError, ValueError) as exc:
            return {}, f"{type(exc).__name__}: {exc}"
        decisions = raw.get("decisions") if isinstance(raw, dict) else None
        if not isinstance(decisions, dict):
            return {}, "no decisions object"
        return decisions, None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _replace(self, text: str) -> None:
        """Write ``text`` to a new file beside ``path`` and rename it over ``path``: a reader never
        sees half a file. ``os.open`` with ``0o666`` gives it the umask's mode, as any new file;
        the temporary file is removed when anything fails."""
        tmp = self.path.parent / f".precision-{secrets.token_hex(6)}.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def _acquire_file(lock_path: Path, wait_s: float, poll_s: float, on_wait: Callable[[], None] | None = None,
                  stopped: Callable[[], bool] | None = None) -> tuple[int, bool]:
    """Open ``lock_path`` and lock it (``_acquire``): ``(fd, held)``. A lock taken on a file the
    holder removed meanwhile (no longer the one at ``lock_path``) is let go, and the path opened
    again, within the same ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            held = _acquire(fd, lock_path, max(0.0, deadline - time.monotonic()), poll_s, on_wait, stopped)
            if not held or _is_at(fd, lock_path):
                return fd, held
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the holder removed that file: take the lock of the one there now
        on_wait = None  # said once


def _is_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file at ``path`` now (not one removed or replaced since it was opened)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _unlink_if_same(fd: int, path: Path) -> bool:
    """Remove ``path`` while ``fd`` (the same file, locked) holds its lock; False where it is
    another file by now, or cannot be removed (it then stays, harmless: the next holder removes it)."""
    if not _is_at(fd, path):
        return False
    try:
        path.unlink()
    except OSError as exc:
        log.debug("could not remove the measurement lock %s (%s)", path, exc)
        return False
    return True


def _acquire(fd: int, lock_path: Path, wait_s: float, poll_s: float, on_wait: Callable[[], None] | None = None,
             stopped: Callable[[], bool] | None = None) -> bool:
    """Take an exclusive ``flock`` on ``fd``, polling (a blocking ``flock`` cannot time out):
    False once ``wait_s`` has passed or ``stopped()`` says so, True when taken or when the
    filesystem has no ``flock``; ``on_wait`` is called once, at the first time it is held elsewhere."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                log.warning("could not lock %s (%s); measuring without the lock", lock_path, exc)
                return True
        if on_wait is not None:
            on_wait()
            on_wait = None
        left = deadline - time.monotonic()
        if left <= 0 or (stopped is not None and stopped()):
            return False
        time.sleep(min(poll_s, left))
