"""``precision.json``: the decisions ``precision.AutoPrecision`` measured, one per machine and model.

A JSON object ``{"decisions": {key: decision}}``. Writers in several processes (workers sharing
a models folder) merge: each takes an exclusive ``flock`` on a sidecar ``precision.json.lock``
around read, merge and replace (where ``fcntl`` exists), and replaces the file in one step, so
a reader never sees half a file and no writer drops another's entry. An entry this version cannot
read is skipped (and kept in the file for the version that wrote it); a corrupt file is logged and
measured again. The file is created with the mode of any new file (``0o666`` less the umask).

A measurement holds ``measuring``'s lock, an exclusive ``flock`` on a sidecar of its own
(``precision.json.<machine hash>.measuring``), so processes measuring at once on one machine
take turns instead of timing each other's load. The lock files stay (removing one races a
waiter); the kernel releases a lock when its holder dies, killed or not.
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
                  on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
        """Hold the measurement lock of ``machine`` (a text naming this machine): yields True once
        held, False when another process held it for ``wait_s`` seconds; ``on_wait`` is called
        once when it has to wait. Where no lock can be taken (no ``fcntl``, an unwritable folder,
        a filesystem without ``flock``) it yields True at once, logged: measuring unlocked, as
        before locks, beats not measuring."""
        if fcntl is None:
            yield True
            return
        digest = hashlib.sha256(machine.encode()).hexdigest()[:12]
        lock_path = self.path.parent / f"{self.path.name}.{digest}.measuring"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            log.warning("could not open the measurement lock %s (%s); measuring without it", lock_path, exc)
            yield True
            return
        try:
            yield _acquire(fd, lock_path, wait_s, poll_s, on_wait)
        finally:
            os.close(fd)  # closing releases the lock

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


def _acquire(fd: int, lock_path: Path, wait_s: float, poll_s: float,
             on_wait: Callable[[], None] | None = None) -> bool:
    """Take an exclusive ``flock`` on ``fd``, polling (a blocking ``flock`` cannot time out):
    False once ``wait_s`` has passed, True when taken or when the filesystem has no ``flock``;
    ``on_wait`` is called once, at the first time it is held elsewhere."""
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
        if left <= 0:
            return False
        time.sleep(min(poll_s, left))
