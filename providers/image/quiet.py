"""Pillow's warnings kept from the terminal while it decodes, safely from many threads at once."""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, cast

#: the filter ``quiet_pillow`` puts in front of the process's warning filters: Pillow's warnings, ignored
_PILLOW_QUIET = ("ignore", None, Warning, re.compile(r"PIL\."), 0)
_quiet_lock = threading.Lock()
#: threads inside ``quiet_pillow`` now; the filter stays in while any is
_quiet_inside = 0
#: the filter lists it was put into (a ``catch_warnings`` elsewhere may have swapped the list meanwhile)
_quiet_lists: list[list[Any]] = []


@contextmanager
def quiet_pillow() -> Iterator[None]:
    """Pillow's warnings while it decodes (``Corrupt EXIF data``, with its file and line) are not
    shown: they reached the command line user's terminal for an image the job read well.

    Thread-safe, unlike ``warnings.catch_warnings``, which swaps the process-wide filter list and
    puts back the one it saw: threads leaving out of order put back each other's lists (a Pillow
    warning shown inside, the filter left behind, a filter the program added meanwhile dropped).
    Here one filter, for Pillow's warnings only, stands in front of the filters while any thread
    is inside and is taken out when the last leaves; nothing else is touched. Another thread's
    Pillow warnings are silenced meanwhile too. No registry reset is needed (``filterwarnings``
    bumps a version for it): an "ignore" filter never reads nor writes the registry of warnings shown.
    """
    global _quiet_inside
    with _quiet_lock:
        _quiet_inside += 1
        filters = cast("list[Any]", warnings.filters)  # a list at run time; typeshed says Sequence
        if not any(item is _PILLOW_QUIET for item in filters):  # a list swapped in since (pytest's, per test)
            filters.insert(0, _PILLOW_QUIET)
            _quiet_lists.append(filters)
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_inside -= 1
            if _quiet_inside == 0:
                for filters in _quiet_lists:
                    # one step another thread's filterwarnings cannot split (a rebuilt list could drop its filter)
                    with suppress(ValueError):  # already gone: resetwarnings(), or a list reset
                        filters.remove(_PILLOW_QUIET)
                _quiet_lists.clear()
