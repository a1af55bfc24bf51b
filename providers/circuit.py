"""Per-model circuit breakers that outlive config reloads.

A model that fails ``failure_threshold`` times in a row is *open*: the router skips it at once
for ``cooldown_s``. After the cooldown it is *half-open*: exactly one call (the probe) may go
through; its success closes the circuit, its failure opens it for another cooldown. A failure
no wait mends (a model name its provider does not serve: retired or misspelt) opens it at once,
for ``NOT_SERVED_HOLD_S``. The board is keyed by model name and lives beside the config store, so
a hot-swapped config keeps the state of the models it still names (a config edit that redefines
a model closes its circuit: ``swarm.runtime``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from core.config import CircuitSpec

CircuitState = Literal["closed", "open", "half_open"]

#: how long a failure no wait mends (``record_failure(..., lasting=True)``) keeps the circuit open:
#: the name will not start working by itself, so each job passes it over at once; an edit of the
#: model in config (or a restart) closes it sooner; after it, one probe call (a fast refusal, no
#: tokens billed) finds whether the provider serves the name again (a passing fault of its own)
NOT_SERVED_HOLD_S = 3600.0


@dataclass
class _Circuit:
    consecutive_failures: int = 0
    open_until: float | None = None
    probe_in_flight: bool = False
    probe_started: float | None = None
    times_opened: int = 0
    last_error: str | None = None
    lasting: bool = False  # opened by a failure no wait mends


class CircuitBoard:
    """Circuit state of every model, shared by every router built from any config version.

    Args:
        failure_threshold: consecutive failures that open a circuit.
        cooldown_s: how long an open circuit skips its model before one probe is let through.
        clock: monotonic seconds; tests inject a fake one.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()

    def configure(self, spec: CircuitSpec) -> None:
        """Adopt the thresholds of a (re)loaded config; the per-model state is kept."""
        with self._lock:
            self.failure_threshold = spec.failure_threshold
            self.cooldown_s = spec.cooldown_s

    def _get(self, name: str) -> _Circuit:
        return self._circuits.setdefault(name, _Circuit())

    def _state(self, circuit: _Circuit, now: float) -> CircuitState:
        if circuit.open_until is None:
            return "closed"
        return "open" if now < circuit.open_until else "half_open"

    def of_model(self, model: str) -> list[str]:
        """The circuits of ``model``: its own, and one per key a client sent for it
        (``"<model> (<holder>)"``, the router's name for a call with that key)."""
        with self._lock:
            return [name for name in self._circuits if name == model or name.startswith(f"{model} (")]

    def state(self, name: str) -> CircuitState:
        """``closed``, ``open`` or ``half_open`` (cooldown over, probe allowed or in flight)."""
        with self._lock:
            return self._state(self._get(name), self.clock())

    def acquire(self, name: str) -> str | None:
        """Ask to call ``name``: ``None`` means go ahead, a string is the reason to skip it.

        In the half-open state the first caller becomes the probe; callers arriving while the
        probe is in flight are skipped. A caller that was let through must report back with
        ``record_success``, ``record_failure`` or ``release``.
        """
        with self._lock:
            circuit = self._get(name)
            now = self.clock()
            state = self._state(circuit, now)
            if state == "closed":
                return None
            if state == "open":
                assert circuit.open_until is not None
                return self._open_reason(circuit, circuit.open_until - now)
            if circuit.probe_in_flight:
                return self._probing_reason(circuit, now)
            circuit.probe_in_flight, circuit.probe_started = True, now
            return None

    def _open_reason(self, circuit: _Circuit, remaining_s: float) -> str:
        until = datetime.now(UTC) + timedelta(seconds=remaining_s)
        why = ("a failure no retry or wait mends" if circuit.lasting
               else f"{circuit.consecutive_failures} consecutive failures")
        return f"circuit open until {until.isoformat(timespec='seconds')} (another {remaining_s:.1f} s) after {why}" + self._last(circuit)

    def _probing_reason(self, circuit: _Circuit, now: float) -> str:
        """Why a caller is skipped while the probe runs, and when the model is tried next: its
        end is not known, but what follows it is (closed at once, or open for a cooldown)."""
        running_s = now - (circuit.probe_started if circuit.probe_started is not None else now)
        return (
            f"circuit half-open after {circuit.consecutive_failures} consecutive failures: a probe call is in"
            f" flight (for {running_s:.1f} s); tried again as soon as it succeeds, or another"
            f" {self._hold_s(circuit.lasting):.1f} s after it fails" + self._last(circuit)
        )

    def _hold_s(self, lasting: bool) -> float:
        """How long a failure opens the circuit: the cooldown, or longer for one no wait mends."""
        return max(NOT_SERVED_HOLD_S, self.cooldown_s) if lasting else self.cooldown_s

    @staticmethod
    def _last(circuit: _Circuit) -> str:
        return f"; last: {circuit.last_error[:300]}" if circuit.last_error else ""

    def record_success(self, name: str) -> None:
        """A call went through: the circuit closes and the failure count resets."""
        with self._lock:
            circuit = self._get(name)
            circuit.consecutive_failures = 0
            circuit.open_until = None
            circuit.probe_in_flight = False
            circuit.last_error = None
            circuit.lasting = False

    def record_failure(self, name: str, error: str | None = None, *, lasting: bool = False) -> None:
        """A call failed: count it; open (or re-open, after a failed probe) when due: at once, for
        ``NOT_SERVED_HOLD_S`` (or the cooldown, when longer), for a failure no wait mends (``lasting``)."""
        with self._lock:
            circuit = self._get(name)
            now = self.clock()
            was_probe = circuit.probe_in_flight
            circuit.probe_in_flight = False
            circuit.consecutive_failures += 1
            circuit.last_error = error
            circuit.lasting = lasting
            if lasting or was_probe or circuit.consecutive_failures >= self.failure_threshold:
                circuit.open_until = now + self._hold_s(lasting)
                circuit.times_opened += 1

    def release(self, name: str) -> None:
        """The caller gave up without an outcome (cancelled): let the next caller probe."""
        with self._lock:
            self._get(name).probe_in_flight = False

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """JSON-able state of every known circuit, for a health resource."""
        with self._lock:
            now = self.clock()
            out: dict[str, dict[str, Any]] = {}
            for name, circuit in sorted(self._circuits.items()):
                state = self._state(circuit, now)
                remaining = (circuit.open_until - now) if state == "open" and circuit.open_until else 0.0
                out[name] = {
                    "state": state,
                    "consecutive_failures": circuit.consecutive_failures,
                    "open_for_s": round(max(remaining, 0.0), 3),
                    "probe_in_flight": circuit.probe_in_flight,
                    "times_opened": circuit.times_opened,
                    "last_error": circuit.last_error,
                }
            return out

    def describe(self, name: str) -> dict[str, Any]:
        """Snapshot of one model's circuit (closed with no failures when never seen)."""
        snap = self.snapshot()
        return snap.get(name, {"state": "closed", "consecutive_failures": 0, "open_for_s": 0.0,
                               "probe_in_flight": False, "times_opened": 0, "last_error": None})
