"""The lateness gate of `transforms.aggregate.windowed.WindowedAggregate`: late records out.

    Blocks of items -> (shard, block) -> gate (state read once per block) -> on-time blocks
                                                                     `-> late records

Beam's GroupByKey drops records that arrive after a window's end plus the allowed lateness,
silently. So before the fold a small stateful step (a few shards in the global window) follows the
input watermark from below with event-time timers (one at each window step ahead, so that a
watermark that jumps several steps fires them together, in one firing of the gate) and takes out, as
``late``, every record whose windows have all closed by that bound. The bound trails the true
watermark by at most one window step while data flows, so the shuffle is given that step as extra
lateness: a record the gate lets through is never dropped (at worst it updates its window in a LATE
pane). Blocks are dealt to the shards in turn and every shard is primed with the first block's
oldest event time, so all shards follow the watermark. Limits: after the whole input was idle for
longer than the windows' span, the first records are judged against an older bound, and one late
beyond that bound plus the slack can still be dropped by Beam unseen; with hopping windows a record
is late only when its last window has closed (its earlier, closed windows drop it silently).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import FloatCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer

from transforms import metrics
from transforms.aggregate.fold import Item
from transforms.aggregate.spec import WindowSpec
from transforms.blocks import Block
from transforms.dead_letter import error_record
from transforms.event_time import format_timestamp
from transforms.message import Record

__all__ = ["AHEAD", "GATE_SHARDS", "LATE_TAG", "LatenessGate", "ShardBlocks"]

LATE = metrics.LATE
GATE_SHARDS = 8
# The most timers a shard's clock has pending, one a window step.
AHEAD = 32
# The gate's tagged output: the dead-letter dict of each late record (reason ``late``).
LATE_TAG = "late"


def expiry(window: WindowSpec, lateness: float, event_time: float) -> float:
    """Returns when the last window holding ``event_time`` stops taking records."""
    if window.type == "session":
        return event_time + window.gap + lateness
    step = window.size if window.type == "tumbling" else window.every
    return math.floor(event_time / step) * step + window.size + lateness


@beam.typehints.with_output_types(tuple[int, Any])
class ShardBlocks(beam.DoFn):
    """Block of items -> ``(shard, block)``, shards taken in turn.

    Taking shards in turn (not by key) keeps every shard of the gate busy, so each follows the
    watermark closely. The first block an instance sees also primes every shard with its oldest
    event time (``(shard, event_time)``), so that no shard judges a record without a bound.
    """

    def setup(self) -> None:
        self._next = 0
        self._primed = False

    def process(self, items: list[Item]) -> Iterator[tuple[int, Any]]:
        if not self._primed:
            self._primed = True
            oldest = min(element[1] for _, _, element in items)
            for shard in range(GATE_SHARDS):
                yield shard, oldest
        self._next = (self._next + 1) % GATE_SHARDS
        yield self._next, items


class LatenessGate(beam.DoFn):
    """Passes the items whose windows are still open, as a `Block`; takes the others out.

    A late record is counted in ``late_records`` and, with ``dead_letter``, goes to the
    `LATE_TAG` output as its dead-letter dict (step ``aggregate``, reason ``late``).

    A shard's clock is a set of event-time timers, one at each multiple of the window step
    from the horizon on (at most `AHEAD` pending), up to the first past the newest event time
    plus the span: a watermark that jumps several steps fires them all at once (one firing of
    the gate, not one per step), and the horizon is the latest that fired. A shard's state is
    one value, ``(horizon, newest, armed)``, each a float or None: the bound records are judged
    against, the newest event time passed, and the last timer set (None while none is pending).
    It is read once per block and written at most once.

    Args:
        window: the spec's windows.
        lateness: the allowed lateness, in seconds.
        pipeline: the pipeline's name, for the dead-letter records.
        dead_letter: dead-letter late records (else only count them).
    """

    GATE = ReadModifyWriteStateSpec(
        "gate", beam.coders.TupleCoder([beam.coders.NullableCoder(FloatCoder())] * 3)
    )
    CLOCK = TimerSpec("clock", TimeDomain.WATERMARK)

    def __init__(
        self, window: WindowSpec, lateness: float, pipeline: str, dead_letter: bool = True
    ) -> None:
        self._window = window
        self._lateness = lateness
        self._pipeline = pipeline
        self._dead_letter = dead_letter
        self._step = window.step
        self._span = max(window.size, window.gap) + lateness + window.step

    def setup(self) -> None:
        self._late = metrics.counter(LATE)

    def process(
        self,
        element: tuple[int, Any],
        gate: Any = beam.DoFn.StateParam(GATE),
        clock: Any = beam.DoFn.TimerParam(CLOCK),
    ) -> Iterator[Any]:
        _, items = element
        bound, latest, armed = gate.read() or (None, None, None)
        if not isinstance(items, list):  # a primer: follow the watermark from its event time
            if armed is None and bound is None:
                start = self._tick(items)
                gate.write((None, items, self._arm(clock, start - self._step, start, items)))
            return
        window, lateness = self._window, self._lateness
        passed = Block()
        newest = latest
        for item in items:
            event_time = item[2][1]
            if bound is not None and expiry(window, lateness, event_time) < bound:
                self._late.inc()
                if self._dead_letter:
                    yield beam.pvalue.TaggedOutput(LATE_TAG, self._late_record(item[0], event_time))
                continue
            if newest is None or event_time > newest:
                newest = event_time
            passed.append(item)
        if not passed or newest is None:
            return
        if armed is None:
            start = self._tick(passed[0][2][1]) if bound is None else bound + self._step
            target = self._arm(clock, start - self._step, start, newest)
        else:
            target = self._arm(clock, armed, armed if bound is None else bound, newest)
        if newest != latest or target != armed:
            gate.write((bound, newest, target))
        yield passed

    def _late_record(self, record: Record, event_time: float) -> dict[str, Any]:
        closed = format_timestamp(expiry(self._window, 0.0, event_time))
        return error_record(
            record,
            pipeline=self._pipeline,
            step="aggregate",
            reason="late",
            error_type="LateRecord",
            error_message=(
                f"event time {format_timestamp(event_time)} is too late: its window closed at "
                f"{closed} and the allowed lateness is {self._lateness:g}s"
            ),
            event_timestamp=event_time,
        )

    def _tick(self, event_time: float) -> float:
        """The step boundary at or before ``event_time``."""
        return math.floor(event_time / self._step) * self._step

    def _arm(self, clock: Any, last: float, horizon: float, newest: float) -> float:
        """Sets the timers after ``last``, one a step; returns the last one set (or ``last``).

        They go up to the first at or past ``newest`` plus the span, and no further than
        `AHEAD` steps past ``horizon`` (the last timer, when it fires, sets the next ones).
        """
        end, limit = newest + self._span, horizon + AHEAD * self._step
        at = last + self._step
        while last < end and at <= limit:
            clock.set(at, dynamic_timer_tag=repr(at))
            last, at = at, at + self._step
        return last

    @on_timer(CLOCK)
    def on_clock(
        self,
        fired: Any = beam.DoFn.TimestampParam,
        gate: Any = beam.DoFn.StateParam(GATE),
        clock: Any = beam.DoFn.TimerParam(CLOCK),
    ) -> Iterator[Any]:
        now = float(fired)
        bound, latest, armed = gate.read() or (None, None, None)
        horizon = now if bound is None else max(bound, now)
        if armed is not None and now < armed:
            gate.write((horizon, latest, armed))  # more timers of this clock are pending
        elif latest is not None and now < latest + self._span:
            gate.write((horizon, latest, self._arm(clock, now, now, latest)))
        else:
            gate.write((horizon, latest, None))
        return iter(())
