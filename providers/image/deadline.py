"""Refusing an upscale that cannot finish within the job's deadline, before it wastes minutes.

The dispatcher kills a job at ``limits.job_deadline_s``; a 4096x4096 upscale on a CPU (256 tiles
at the default tile size) needs far longer, and used to run until it was killed. The image
action opens ``job_deadline`` around its run; the upscaler then estimates how long the job's
tiles need (``work_pixels``: the padded tiles' pixels, what the network really runs on) at the
speed of its model on this machine (``Speeds``) and raises ``InputError`` naming the image, the
estimate, the limit and what would fit (``check_fits``). It checks before waiting for the model
and again once it holds the model (a wait or a precision measurement took time).

The speed is measured on real upscale tiles, never assumed: each upscale this process ran (the
fastest figure is kept), over its tiles after the first (``WARM_TILES``), which carries the
network's one-off set-up: a one-tile job teaches nothing (a 64x48 upscale, timed whole, read
~1,850 pixels/s where tiles ran ~44,000, and the next 1300x1300 input, a 48 s job, was refused).
``precision: auto``'s timing of its 64x64 probes is not one either: per-call overhead dominates it
(realesr-animevideov3-x4: ~5,500 pixels/s there, ~30,000 in real upscales). Up front a job is
refused only when it would not fit even at ``UP_FRONT_MARGIN`` times the figure; where no figure
exists, nothing is refused up front.

Whatever was known up front, the job's own tiles decide (``TileWatch``): after its first warm
tiles and every ``RECHECK_EVERY_TILES`` after, the rate of its tiles since the warm ones says
whether the rest can finish in what is left, so a job accepted on a figure too fast for now (load,
another model) stops early with the same kind of message instead of being killed at the deadline.

Nothing here imports anything heavy.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from core.errors import InputError
from providers.base import ImageConfig
from providers.image.tiling import Tile, plan_tiles

#: the config key of the deadline, named in every refusal
DEADLINE_KEY = "limits.job_deadline_s"
#: the tiles a job runs before its own speed first decides: the first one carries the network's
#: one-off set-up, so the rate is taken over the next ones
WARM_TILES = 1
MEASURED_TILES = 2
#: after that, the job's rate since its warm tiles decides again every this many tiles: a job that
#: falls behind (the machine got busier) stops early instead of at the deadline
RECHECK_EVERY_TILES = 8
#: up front a job is refused only when it would not fit even at this many times the known speed:
#: that figure is a whole earlier upscale's, and a small one's includes its first tile's set-up,
#: which can make it read several times slow; a job accepted on the margin that is too slow for
#: its deadline is still stopped by its own tiles (``TileWatch``)
UP_FRONT_MARGIN = 2.0


@dataclass(frozen=True)
class Deadline:
    """The job must be done by ``at`` on ``clock`` (``limit_s`` after it started)."""

    limit_s: float
    at: float
    key: str = DEADLINE_KEY
    clock: Callable[[], float] = time.monotonic

    def left(self) -> float:
        """Seconds left before the deadline."""
        return self.at - self.clock()


_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("image_job_deadline", default=None)


@contextlib.contextmanager
def job_deadline(limit_s: float, *, at: float | None = None, key: str = DEADLINE_KEY,
                 clock: Callable[[], float] = time.monotonic) -> Iterator[Deadline]:
    """Within this block (and the worker threads it starts), image work must finish by ``at`` on
    ``clock`` (the job's own deadline, which the dispatcher set when the job started), or within
    ``limit_s`` seconds from now when the job has none; ``clock`` is for tests."""
    deadline = Deadline(limit_s, clock() + limit_s if at is None else at, key, clock)
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def current_deadline() -> Deadline | None:
    """The deadline ``job_deadline`` set around this work, or None (no deadline: never refused)."""
    return _deadline.get()


class BatchPace:
    """When a batch stops starting images: each image it ran says how long one takes here (the
    slowest so far), and an image that would not finish in what is left of the job's deadline is
    not started. The images done are then kept: a batch killed at the deadline lost every one.
    Safe from the batch's worker threads."""

    #: what storing the outputs and describing them needs after the last image
    MARGIN_S = 1.0
    #: the slowest image so far, times this, is what the next one is given
    SLACK = 1.25

    def __init__(self, deadline: Deadline | None) -> None:
        self.deadline = deadline
        self.slowest_s = 0.0
        self._lock = threading.Lock()

    def clock(self) -> float:
        """Now, on the deadline's clock."""
        return (self.deadline.clock if self.deadline is not None else time.monotonic)()

    def took(self, seconds: float) -> None:
        """One image of the batch ran in ``seconds`` (on ``clock``)."""
        with self._lock:
            self.slowest_s = max(self.slowest_s, seconds)

    def too_late(self, field: str) -> InputError | None:
        """Why the image ``field`` is not started (an error naming the deadline's key, the time
        left and what one image takes), or None: start it. Before any image finished, always None."""
        deadline = self.deadline
        with self._lock:
            slowest = self.slowest_s
        if deadline is None or slowest == 0.0:
            return None
        left = deadline.left()
        if left >= slowest * self.SLACK + self.MARGIN_S:
            return None
        return InputError(
            f"not started: {left:.1f} s were left of the job's deadline ({deadline.key}: {deadline.limit_s:g} s)"
            f" and an image here took up to {slowest:.1f} s; the images before it are kept, send this one"
            " again in a new job (or a smaller batch)", field=field)


@runtime_checkable
class DeadlineAware(Protocol):
    """An image provider that can tell, before a job runs, that it cannot finish in time."""

    def check_deadline(self, width: int, height: int, config: ImageConfig, deadline: Deadline) -> None:
        """Raise ``InputError`` (field ``image``) when a ``width`` x ``height`` input cannot be
        done before ``deadline`` at the speed known for this machine; else return."""


@dataclass(frozen=True)
class Speed:
    """Input pixels per second through a model's network on this machine, and where that figure
    comes from ("measured by precision auto on this CPU")."""

    pixels_per_s: float
    source: str


@dataclass
class Speeds:
    """The fastest speed known per model, in this process (thread-safe)."""

    _best: dict[str, Speed] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, model: str, pixels: float, seconds: float, source: str) -> None:
        """``pixels`` ran in ``seconds``; kept when faster than what was known."""
        if pixels <= 0 or seconds <= 0:
            return
        speed = Speed(pixels / seconds, source)
        with self._lock:
            known = self._best.get(model)
            if known is None or speed.pixels_per_s > known.pixels_per_s:
                self._best[model] = speed

    def get(self, model: str) -> Speed | None:
        with self._lock:
            return self._best.get(model)


def work_pixels(tiles: list[Tile]) -> int:
    """The input pixels the network runs on: each tile with its padding."""
    return sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in (t.padded for t in tiles))


@dataclass(frozen=True)
class Job:
    """What an upscale runs: ``width`` x ``height`` through ``model``, in ``tile`` tiles with ``pad``."""

    model: str
    width: int
    height: int
    tile: int
    pad: int

    def tiles(self) -> list[Tile]:
        return plan_tiles(self.width, self.height, self.tile, self.pad)

    def largest_fitting(self, pixels_per_s: float, seconds: float) -> tuple[int, int]:
        """The largest input of this aspect whose tiles run within ``seconds`` at ``pixels_per_s``."""
        low, high = 0.0, 1.0
        for _ in range(24):
            middle = (low + high) / 2
            width, height = max(1, int(self.width * middle)), max(1, int(self.height * middle))
            fits = work_pixels(plan_tiles(width, height, self.tile, self.pad)) / pixels_per_s <= seconds
            low, high = (middle, high) if fits else (low, middle)
        return max(1, int(self.width * low)), max(1, int(self.height * low))


def check_fits(job: Job, speed: Speed | None, deadline: Deadline | None) -> None:
    """``InputError`` (field ``image``) when ``job``'s tiles need longer than ``deadline`` leaves
    even at ``UP_FRONT_MARGIN`` times ``speed``; nothing without a speed or a deadline. The
    message gives the estimate at ``speed`` itself, and what fits at it."""
    if speed is None or deadline is None:
        return
    tiles = job.tiles()
    pixels = work_pixels(tiles)
    needs, left = pixels / speed.pixels_per_s, deadline.left()
    if needs / UP_FRONT_MARGIN <= left:
        return
    raise InputError(
        f"a {job.width}x{job.height} input needs about {needs:,.0f} s to upscale on this machine "
        f"({len(tiles)} tiles, {pixels / 1e6:.1f} M pixels through {job.model} at ~{speed.pixels_per_s:,.0f} "
        f"pixels/s, {speed.source}); {deadline.key} is {deadline.limit_s:g} s ({max(left, 0):,.0f} s left). "
        + (_padding_bound(job, pixels) or _what_fits(job, speed.pixels_per_s, needs, left, deadline)),
        field="tile" if _padding_bound(job, pixels) else "image",
    )


#: a job whose padded tiles are this many times its input's pixels is slow for its tile size, not its image
PADDING_BOUND = 4


def _padding_bound(job: Job, pixels: int) -> str | None:
    """What to change when the tiles' padding, not the image, makes the job slow: ``tile: 1`` cut a
    64x48 input into 3,072 tiles, each padded to 21x21, and the error blamed the image's size."""
    if not job.tile or pixels < PADDING_BOUND * job.width * job.height:
        return None
    return (f"tile {job.tile} pads each tile by {job.pad} pixels a side, so the network runs on "
            f"{pixels / (job.width * job.height):,.0f}x the input's pixels: give a larger tile (0: the whole image"
            " at once, memory allowing).")


def _what_fits(job: Job, pixels_per_s: float, needs: float, left: float, deadline: Deadline,
               tiles_s: float = 0.0) -> str:
    """The largest input whose tiles fit in what this job had for them (``left`` plus the
    ``tiles_s`` it already spent on tiles), and the deadline that would let this one finish."""
    width, height = job.largest_fitting(pixels_per_s, max(left + tiles_s, 0.0))
    used = deadline.limit_s - left  # already spent by this job: reading, waiting, measuring, tiles
    raise_to = math.ceil((needs + used) / 10) * 10
    return (f"What fits: an input of at most ~{width}x{height} (every scale runs the model's x4 network, so a "
            f"smaller scale takes as long), or raise {deadline.key} to at least {raise_to}.")


class TileWatch:
    """The job's own speed decides whether it can finish in time, whatever was known up front:
    after ``WARM_TILES`` + ``MEASURED_TILES`` tiles and every ``RECHECK_EVERY_TILES`` after, the
    rate of its tiles since the warm ones says whether the rest fit in what is left;
    ``tile_done`` raises ``InputError`` when they cannot."""

    def __init__(self, job: Job, tiles: list[Tile], deadline: Deadline | None) -> None:
        self.job, self.tiles, self.deadline = job, tiles, deadline
        self._warm_at: float | None = None
        #: ``(pixels, seconds)`` of the tiles since the warm ones, at the latest check: the next job's speed
        self.measured: tuple[int, float] | None = None

    def tile_done(self, done: int, total: int) -> None:
        """Call after each tile (``done`` of ``total``; 0 before the first)."""
        if self.deadline is None or done >= total:
            return
        if done == WARM_TILES:
            self._warm_at = self.deadline.clock()
        elif self._warm_at is not None and _check_due(done):
            self._check(done, total)

    def _check(self, done: int, total: int) -> None:
        assert self.deadline is not None and self._warm_at is not None
        seconds = self.deadline.clock() - self._warm_at  # the tiles since the warm one, which is not counted
        ran = work_pixels(self.tiles[WARM_TILES:done])
        if seconds <= 0 or ran <= 0:
            return
        self.measured, rate = (ran, seconds), ran / seconds
        needs, left = work_pixels(self.tiles[done:]) / rate, self.deadline.left()
        if needs <= left:
            return
        raise InputError(
            f"a {self.job.width}x{self.job.height} input cannot be upscaled in time on this machine: stopped after "
            f"{done} of {total} tiles, which ran at ~{rate:,.0f} pixels/s through {self.job.model}; the other "
            f"{total - done} need about {needs:,.0f} s and {max(left, 0):,.0f} s of {self.deadline.key}="
            f"{self.deadline.limit_s:g} s are left. "
            + (_padding_bound(self.job, work_pixels(self.tiles))
               or _what_fits(self.job, rate, needs, left, self.deadline, work_pixels(self.tiles[:done]) / rate)),
            field="tile" if _padding_bound(self.job, work_pixels(self.tiles)) else "image",
        )


def _check_due(done: int) -> bool:
    """Whether the job's own rate decides after tile ``done``: first after the measured tiles,
    then every ``RECHECK_EVERY_TILES``."""
    since_first = done - WARM_TILES - MEASURED_TILES
    return since_first >= 0 and since_first % RECHECK_EVERY_TILES == 0
