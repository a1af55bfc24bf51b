"""``quiet_pillow`` from several threads at once (an image batch decodes on worker threads).

It was ``warnings.catch_warnings()``, which swaps the process-wide filter list on entry and puts
back the one it saw on exit: two threads that entered and left out of order put back each other's
lists. One thread's Pillow warning then reached the terminal while it was inside (the other had
put back the list without the filter), the Pillow filter stayed behind for the whole process
after both had left, and a filter the program added meanwhile was dropped.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Callable, Iterator

import pytest
from PIL import Image
from test_image_exif_warning import jpeg_with_corrupt_exif

from providers.image.imageio import quiet_pillow


class Holder:
    """A thread inside ``quiet_pillow`` until told to leave; ``before_leaving`` runs inside it then."""

    def __init__(self, before_leaving: Callable[[], None] | None = None) -> None:
        self.entered, self.leave = threading.Event(), threading.Event()
        self.before_leaving = before_leaving
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.entered.wait(5)

    def _run(self) -> None:
        try:
            with quiet_pillow():
                self.entered.set()
                assert self.leave.wait(5)
                if self.before_leaving is not None:
                    self.before_leaving()
        except BaseException as exc:  # the test thread re-raises it
            self.errors.append(exc)

    def leaves(self) -> None:
        self.leave.set()
        self.thread.join(5)
        if self.errors:
            raise self.errors[0]


def decode_corrupt_exif() -> None:
    """What ``open_checked`` does inside ``quiet_pillow``: Pillow warns "Corrupt EXIF data"."""
    Image.open(io.BytesIO(jpeg_with_corrupt_exif())).getexif()


@pytest.fixture
def shown() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning shown, from any thread, while the test runs (each time, not once per place)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def test_the_decoding_warns_outside_quiet_pillow(shown: list[warnings.WarningMessage]) -> None:
    decode_corrupt_exif()  # the warning the tests below expect silenced (or not) does occur
    assert any("Corrupt EXIF data" in str(w.message) for w in shown)


def test_a_thread_still_inside_stays_quiet_when_another_that_entered_first_leaves(
        shown: list[warnings.WarningMessage]) -> None:
    first = Holder()
    second = Holder(before_leaving=decode_corrupt_exif)
    first.leaves()
    second.leaves()
    assert [str(w.message) for w in shown] == []


def test_no_pillow_filter_is_left_behind_when_threads_leave_out_of_order(
        shown: list[warnings.WarningMessage]) -> None:
    before = list(warnings.filters)
    first = Holder()
    second = Holder()
    first.leaves()
    second.leaves()
    assert warnings.filters == before
    decode_corrupt_exif()  # outside quiet_pillow: the warning is the program's to see
    assert any("Corrupt EXIF data" in str(w.message) for w in shown)


def test_a_filter_the_program_adds_while_a_thread_is_inside_is_kept(shown: list[warnings.WarningMessage]) -> None:
    inside = Holder()
    warnings.filterwarnings("error", message="the program's own filter")
    inside.leaves()
    with pytest.raises(UserWarning, match="the program's own filter"):
        warnings.warn("the program's own filter", UserWarning, stacklevel=1)


def test_many_threads_entering_and_leaving_at_once_leave_the_filters_as_they_were(
        shown: list[warnings.WarningMessage]) -> None:
    before = list(warnings.filters)
    start = threading.Barrier(16)

    def work() -> None:
        start.wait(5)
        for _ in range(200):
            with quiet_pillow():
                decode_corrupt_exif()

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [str(w.message) for w in shown] == []
    assert warnings.filters == before
