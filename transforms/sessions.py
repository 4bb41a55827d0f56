"""Sessions per key: bursts of activity separated by more than a gap, one row per session.

A session row (``key_field="user_id"``, ``include_fields=("page",)``)::

    {"user_id": "u1",
     "session_start": "2026-11-25T10:00:00Z",   # the first event's time
     "session_end": "2026-11-25T10:12:30Z",     # the LAST event's time (not last + gap)
     "event_count": 7, "duration_s": 750.0,     # end - start
     "first_page": "/home", "last_page": "/cart",
     "timing": "ON_TIME"}                       # EARLY, ON_TIME or LATE pane

    blocks of Records -> stamp (key, event time) -> [lateness gate: unbounded input]
        -> partial sessions per key within the bundle -> WindowInto(Sessions(gap), trigger)
        -> CombinePerKey(count, first, last) -> session rows -> blocks

Each event gets a stamp, its event time in microseconds as fixed-width text followed by the JSON
of its included fields; a session keeps the ``min`` and ``max`` stamp (text order is time order;
events at the same instant are ordered by their fields' JSON), since Beam's session window ends a
gap after the last event. Within a bundle the events of a key are folded into partial sessions
(`PartialSessions`), so that few elements cross the shuffle; Beam's own session windows merge the
partial sessions of all bundles, fire early and late panes and keep their lateness.

A partial session goes to Beam as its chain of anchors: events whose windows ``[t, t + gap)``
cover the windows of all its events (consecutive anchors' windows overlap), the last one
carrying the partial aggregate and the others an empty one. Events are merged into one partial
session only where their windows overlap in whole milliseconds, as Beam's window coder keeps
them, so Beam merges every chain it is given, on every runner.

Late records: on an unbounded input a lateness gate (`transforms.aggregate`'s, judging a block
at a time) dead-letters records too late for their session (step ``aggregate``, reason
``late``, counted in ``late_records``) before Beam would drop them silently. Records without the
key are dead-lettered with reason ``missing_key``, records whose key is a list, an object or a
number that is not finite with ``bad_key``, and records whose session would end after the last
time Beam and the rows can hold (a gap after the event) with ``bad_timestamp``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import trigger as triggers
from apache_beam.transforms import window as windows
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from transforms.aggregate import AGGREGATED, GATE_SHARDS, LATE, _LatenessGate
from transforms.aggregate_spec import WindowSpec
from transforms.blocks import Batch, Block
from transforms.dead_letter import error_record
from transforms.errors import BadTimestamp, RecordError
from transforms.event_time import format_timestamp
from transforms.message import Record
from transforms.metrics import NAMESPACE
from transforms.schema import Field, Schema

__all__ = [
    "MAX_KEYS",
    "BadKey",
    "MissingKey",
    "PartialSessions",
    "SessionSpec",
    "Sessionize",
    "session_schema",
]

ROW_FIELDS = ("session_start", "session_end", "event_count", "duration_s", "timing")
# Event times in microseconds, shifted to be positive, as 19 digits: text order is time order
# over the whole range of event times (years 1 to 9999).
_SHIFT_MICROS = 10**17
_DIGITS = 19
# Keys held by the partial sessions of a bundle before they are sent on.
MAX_KEYS = 50_000
_TIMING = {0: "EARLY", 1: "ON_TIME", 2: "LATE"}


class MissingKey(RecordError):
    """The record has no value for the session key."""

    reason = "missing_key"


class BadKey(RecordError):
    """The session key is a list, an object or a number that is not finite."""

    reason = "bad_key"


def _stamp(micros: int, fields: dict[str, Any]) -> str:
    return f"{micros + _SHIFT_MICROS:0{_DIGITS}d}" + json.dumps(fields, sort_keys=True, default=str)


def _unstamp(stamp: str) -> tuple[int, dict[str, Any]]:
    return int(stamp[:_DIGITS]) - _SHIFT_MICROS, json.loads(stamp[_DIGITS:])


@dataclass(frozen=True)
class SessionSpec:
    """What makes a session, validated when built.

    Attributes:
        key_field: the field whose value a session belongs to, e.g. ``user_id``.
        gap: the inactivity, in seconds, after which a key's session ends.
        allowed_lateness: how long after a session closes late records still update it.
        early_seconds: fire EARLY rows every this many seconds of processing time while a
            session is open (0: only when it closes; streaming runs only).
        include_fields: fields of the first and last events to keep as ``first_<f>`` and
            ``last_<f>``.
    """

    key_field: str
    gap: float
    allowed_lateness: float = 0.0
    early_seconds: float = 0.0
    include_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.key_field:
            raise ValueError("sessions need a key field, e.g. user_id")
        if self.gap <= 0:
            raise ValueError(f"the session gap must be positive, got {self.gap:g}s")
        if self.allowed_lateness < 0 or self.early_seconds < 0:
            raise ValueError("allowed lateness and early firing interval must not be negative")
        if not all(self.include_fields) or len(set(self.include_fields)) < len(self.include_fields):
            raise ValueError(f"include_fields must be distinct names, got {self.include_fields}")
        names = [self.key_field, *ROW_FIELDS, *self.extra_columns]
        clashes = sorted({name for name in names if names.count(name) > 1})
        if clashes:
            raise ValueError(f"output columns {clashes} would be named twice; rename the key")

    @property
    def extra_columns(self) -> tuple[str, ...]:
        """The ``first_<f>`` and ``last_<f>`` columns, in order."""
        return tuple(f"{end}_{name}" for end in ("first", "last") for name in self.include_fields)

    @property
    def input_fields(self) -> frozenset[str]:
        """The record fields the sessions read."""
        return frozenset((self.key_field, *self.include_fields))


def session_schema(spec: SessionSpec, records: Schema | None) -> Schema:
    """Returns the schema of session rows; included fields and the key keep their record type."""

    def field_type(name: str) -> str:
        found = records.get(name) if records is not None else None
        if found is None or found.mode == "REPEATED" or found.type == "RECORD":
            return "STRING"
        return found.type

    fields = [
        Field(spec.key_field, field_type(spec.key_field)),
        Field("session_start", "TIMESTAMP"),
        Field("session_end", "TIMESTAMP"),
        Field("event_count", "INTEGER"),
        Field("duration_s", "FLOAT"),
    ]
    fields += [
        Field(f"{end}_{name}", field_type(name))
        for end in ("first", "last")
        for name in spec.include_fields
    ]
    fields.append(Field("timing", "STRING"))
    return Schema(tuple(fields))


class _Event(NamedTuple):
    """A stamped event: its key, event time (seconds and microseconds), stamp and record."""

    key: Any
    time: float
    micros: int
    stamp: str
    record: Record


# ``(event_count, first_stamp, last_stamp)``; an anchor without events is ``(0, None, None)``.
Aggregate = tuple[int, str | None, str | None]
_EMPTY: Aggregate = (0, None, None)


def _merged(a: Aggregate, b: Aggregate) -> Aggregate:
    if not a[0]:
        return b
    if not b[0]:
        return a
    return a[0] + b[0], min(a[1], b[1]), max(a[2], b[2])  # type: ignore[type-var]


class PartialSessions:
    """The sessions of one key among some of its events, as Beam's session windows merge them.

    Each session is ``[anchors, aggregate]``: ``anchors`` the event times (microseconds, in
    order) whose windows ``[t, t + gap)``, in whole milliseconds, chain from the session's first
    event to its last, each overlapping the next; sessions are disjoint and in time order.

    Args:
        gap_micros: the gap, in microseconds.
    """

    def __init__(self, gap_micros: int) -> None:
        self._gap = gap_micros
        self.sessions: list[list[Any]] = []

    def _start(self, micros: int) -> int:
        return micros // 1000

    def _end(self, micros: int) -> int:
        return (micros + self._gap) // 1000

    def add(self, micros: int, stamp: str) -> None:
        """Adds one event, merging the sessions its window overlaps."""
        sessions = self.sessions
        aggregate: Aggregate = (1, stamp, stamp)
        if sessions:
            newest = sessions[-1]
            anchors = newest[0]
            # The usual case, events in time order: the event extends the newest session.
            if micros >= anchors[-1] and self._start(micros) < self._end(anchors[-1]):
                if len(anchors) > 1 and self._start(micros) < self._end(anchors[-2]):
                    anchors[-1] = micros
                else:
                    anchors.append(micros)
                newest[1] = _merged(newest[1], aggregate)
                return
        self._insert([[micros], aggregate])

    def _insert(self, new: list[Any]) -> None:
        start, end = self._start(new[0][0]), self._end(new[0][-1])
        overlapping = [
            s for s in self.sessions if self._start(s[0][0]) < end and start < self._end(s[0][-1])
        ]
        if overlapping:
            anchors = sorted(t for s in [*overlapping, new] for t in s[0])
            aggregate = new[1]
            for session in overlapping:
                aggregate = _merged(aggregate, session[1])
            new = [self._chain(anchors), aggregate]
        kept = [s for s in self.sessions if not any(s is o for o in overlapping)]
        self.sessions = sorted([*kept, new], key=lambda s: s[0][0])

    def _chain(self, anchors: list[int]) -> list[int]:
        """The fewest of ``anchors`` (sorted, each window overlapping the next) that still chain."""
        chain = [anchors[0]]
        for t in anchors[1:]:
            if len(chain) > 1 and self._start(t) < self._end(chain[-2]):
                chain[-1] = t
            else:
                chain.append(t)
        return chain

    def elements(self) -> Iterator[tuple[int, Aggregate]]:
        """``(anchor_micros, aggregate)`` per anchor; a session's aggregate is on its last."""
        for anchors, aggregate in self.sessions:
            for t in anchors[:-1]:
                yield t, _EMPTY
            yield anchors[-1], aggregate


@beam.typehints.with_output_types(Block)
class _StampFn(beam.DoFn):
    """A block of `Record`s -> the block of their `_Event`s; failures to ``missing``.

    A record without the key, with a key that cannot group sessions, or whose session would end
    out of range goes to the ``missing`` output as a dead-letter dict. A record without an event
    time takes its block's timestamp.
    """

    def __init__(self, spec: SessionSpec, pipeline: str) -> None:
        self._spec = spec
        self._pipeline = pipeline

    def process(self, block: list[Record], timestamp: Any = beam.DoFn.TimestampParam) -> Any:
        events = Block()
        block_time = None if timestamp <= MIN_TIMESTAMP else float(timestamp)
        for record in block:
            event_time = record.event_time if record.event_time is not None else block_time
            try:
                events.append(self._event(record, event_time))
            except RecordError as error:
                yield TaggedOutput("missing", self._rejected(record, event_time, error))
        if events:
            yield events

    def _event(self, record: Record, event_time: float | None) -> _Event:
        """Returns the stamped event; raises `MissingKey`, `BadKey` or `BadTimestamp`."""
        name = self._spec.key_field
        key = record.data.get(name)
        if key is None:
            raise MissingKey(f"the record has no value for key field {name!r}")
        if isinstance(key, (list, dict)) or (isinstance(key, float) and not math.isfinite(key)):
            raise BadKey(f"key field {name!r} holds {str(key)[:64]}: a key is a string or number")
        if event_time is None:
            raise BadTimestamp("the record has no event time")
        try:
            format_timestamp(event_time + self._spec.gap)
        except OverflowError:
            raise BadTimestamp(
                f"event time {format_timestamp(event_time)}: its session would end "
                f"{self._spec.gap:g}s later, after the last time a row can hold"
            ) from None
        micros = Timestamp.of(event_time).micros
        fields = {name: record.data.get(name) for name in self._spec.include_fields}
        return _Event(key, event_time, micros, _stamp(micros, fields), record)

    def _rejected(self, record: Record, event_time: float | None, error: RecordError) -> Any:
        return error_record(
            record,
            pipeline=self._pipeline,
            step="sessions",
            reason=error.reason,
            error_type=type(error).__name__,
            error_message=str(error),
            event_timestamp=event_time,
        )


class _ShardFn(beam.DoFn):
    """A block of `_Event`s -> ``(shard, block)``, shards taken in turn.

    The first block an instance sees also primes every shard with its oldest event time
    (``(shard, None)``), so that no shard of the gate judges an event without a bound.
    """

    def setup(self) -> None:
        self._next = 0
        self._primed = False

    def process(self, block: list[_Event]) -> Iterator[Any]:
        if not self._primed:
            self._primed = True
            oldest = min(event.time for event in block)
            for shard in range(GATE_SHARDS):
                yield windows.TimestampedValue((shard, None), oldest)
        self._next = (self._next + 1) % GATE_SHARDS
        yield self._next, block


@beam.typehints.with_output_types(Block)
class _BlockGate(_LatenessGate):
    """`transforms.aggregate`'s lateness gate, judging a block of `_Event`s at a time.

    Output: the block of events still in time, and on ``late`` the dead-letter dicts of the
    others (step ``aggregate``, reason ``late``).
    """

    def __init__(self, spec: SessionSpec, lateness: float, pipeline: str) -> None:
        super().__init__(WindowSpec("session", gap=spec.gap), lateness)
        self._gap = spec.gap
        self._pipeline = pipeline

    def setup(self) -> None:
        self._late = Metrics.counter(NAMESPACE, LATE)

    def process(  # type: ignore[override]
        self,
        element: tuple[int, list[_Event] | None],
        timestamp: Any = beam.DoFn.TimestampParam,
        gate: Any = beam.DoFn.StateParam(_LatenessGate.GATE),
        clock: Any = beam.DoFn.TimerParam(_LatenessGate.CLOCK),
    ) -> Iterator[Any]:
        _, block = element
        bound, latest, armed = gate.read() or (None, None, None)
        if block is None:  # a primer: start following the watermark from its event time
            if armed is None and bound is None:
                clock.set(timestamp)
                gate.write((None, float(timestamp), float(timestamp)))
            return
        on_time = Block()
        newest = latest
        for event in block:
            if bound is not None and event.time + self._gap + self._lateness < bound:
                self._late.inc()
                yield TaggedOutput("late", self._dead_letter(event))
                continue
            on_time.append(event)
            if newest is None or event.time > newest:
                newest = event.time
        if not on_time:
            return
        target = armed
        if target is None:
            target = on_time[0].time if bound is None else bound + self._step
            clock.set(target)
        if newest != latest or target != armed:
            gate.write((bound, newest, target))
        yield on_time

    def _dead_letter(self, event: _Event) -> dict[str, Any]:
        closed = format_timestamp(event.time + self._gap)
        return error_record(
            event.record,
            pipeline=self._pipeline,
            step="aggregate",
            reason="late",
            error_type="LateRecord",
            error_message=(
                f"event time {format_timestamp(event.time)} is too late: its window closed at "
                f"{closed} and the allowed lateness is {self._lateness:g}s"
            ),
            event_timestamp=event.time,
        )


class _PreSessionsFn(beam.DoFn):
    """Blocks of `_Event`s -> ``(key, aggregate)`` per anchor of the bundle's partial sessions.

    Each output is timestamped with its anchor's event time, in the global window; the partial
    sessions are sent on at the end of the bundle, or when `MAX_KEYS` keys are held. Events are
    counted as ``aggregated``.
    """

    def __init__(self, gap: float) -> None:
        self._gap = Duration.of(gap).micros

    def setup(self) -> None:
        self._aggregated = Metrics.counter(NAMESPACE, AGGREGATED)

    def start_bundle(self) -> None:
        self._held: dict[Any, PartialSessions] = {}

    def process(self, block: list[_Event]) -> Iterator[WindowedValue]:
        held = self._held
        for event in block:
            sessions = held.get(event.key)
            if sessions is None:
                held[event.key] = sessions = PartialSessions(self._gap)
            sessions.add(event.micros, event.stamp)
        self._aggregated.inc(len(block))
        if len(held) >= MAX_KEYS:
            yield from self.finish_bundle()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        held, self._held = self._held, {}
        window = (windows.GlobalWindow(),)
        for key, sessions in held.items():
            for micros, aggregate in sessions.elements():
                yield WindowedValue((key, aggregate), Timestamp(micros=micros), window)


class _SessionCombineFn(beam.CombineFn):
    """Combines the aggregates of a key's anchors: ``(event_count, first_stamp, last_stamp)``."""

    def create_accumulator(self) -> Aggregate:
        return _EMPTY

    def add_input(self, accumulator: Aggregate, aggregate: Aggregate) -> Aggregate:
        return _merged(accumulator, aggregate)

    def merge_accumulators(self, accumulators: Any) -> Aggregate:
        merged = _EMPTY
        for accumulator in accumulators:
            merged = _merged(merged, accumulator)
        return merged

    def extract_output(self, accumulator: Aggregate) -> Aggregate:
        return accumulator


class _ToSessionRow(beam.DoFn):
    """``(key, aggregate)`` of a session window and pane -> the session `Record` of this module.

    The record's event time is the window's last instant, as Beam timestamps the pane.
    """

    def __init__(self, spec: SessionSpec) -> None:
        self._spec = spec

    def process(
        self,
        element: tuple[Any, Aggregate],
        window: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[Record]:
        key, (count, first_stamp, last_stamp) = element
        start, first = _unstamp(first_stamp)  # type: ignore[arg-type]
        end, last = _unstamp(last_stamp)  # type: ignore[arg-type]
        session: dict[str, Any] = {
            self._spec.key_field: key,
            "session_start": format_timestamp(start / 1e6),
            "session_end": format_timestamp(end / 1e6),
            "event_count": count,
            "duration_s": (end - start) / 1e6,
        }
        for name in self._spec.include_fields:
            session[f"first_{name}"] = first.get(name)
        for name in self._spec.include_fields:
            session[f"last_{name}"] = last.get(name)
        session["timing"] = _TIMING.get(pane.timing, "UNKNOWN")
        yield Record(session, None, float(window.max_timestamp()))


def _trigger(spec: SessionSpec, lateness: float, bounded: bool) -> triggers.TriggerFn:
    """Fires when the watermark passes a session, early on a clock (streams only), late per record.

    Processing-time triggers take whole seconds and cannot run in batch (no clock).
    """
    early = None
    if spec.early_seconds and not bounded:
        early = triggers.AfterProcessingTime(max(1, round(spec.early_seconds)))
    late = triggers.AfterCount(1) if lateness > 0 else None
    return triggers.AfterWatermark(early=early, late=late)


class Sessionize(beam.PTransform):
    """Groups blocks of `Record`s into sessions per key; one row per session (and pane).

    Input: `Block`s of `Record`s, each with its event time (`Record.event_time`, else its
    block's timestamp), bounded or not. Returns ``(rows, errors)``: ``rows`` are `Block`s of
    `Record`s holding session rows (see this module), in the global window, each with its
    session window's last instant as event time; ``errors`` are dead-letter dicts of records
    without the key (``missing_key``), with a key that cannot group (``bad_key``), whose
    session would end out of range (``bad_timestamp``) or too late for their session
    (``late``). Records that enter a session are counted as ``aggregated``.

    Args:
        spec: what makes a session.
        pipeline: the pipeline's name, for the dead-letter records.
    """

    def __init__(self, spec: SessionSpec, pipeline: str) -> None:
        super().__init__()
        self._spec = spec
        self._pipeline = pipeline

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        spec = self._spec
        stamped = blocks | "Stamp" >> beam.ParDo(_StampFn(spec, self._pipeline)).with_outputs(
            "missing", main="events"
        )
        events, errors = stamped.events, [stamped.missing]
        slack = 0.0
        if not blocks.is_bounded:
            gated = (
                events
                | "Shard" >> beam.ParDo(_ShardFn())
                | "Lateness gate"
                >> beam.ParDo(_BlockGate(spec, spec.allowed_lateness, self._pipeline)).with_outputs(
                    "late", main="on_time"
                )
            )
            events = gated.on_time
            errors.append(gated.late)
            # The gate's bound trails the watermark by up to a gap: the shuffle allows that too.
            slack = spec.gap
        lateness = spec.allowed_lateness + slack
        accumulation = triggers.AccumulationMode.ACCUMULATING
        rows = (
            events
            | "Partial sessions" >> beam.ParDo(_PreSessionsFn(spec.gap))
            | "Session windows"
            >> beam.WindowInto(
                windows.Sessions(spec.gap),
                trigger=_trigger(spec, lateness, blocks.is_bounded),
                accumulation_mode=accumulation,
                allowed_lateness=Duration.of(lateness),
            )
            | "Sessions" >> beam.CombinePerKey(_SessionCombineFn())
            | "Rows" >> beam.ParDo(_ToSessionRow(spec))
            | "Global window" >> beam.WindowInto(windows.GlobalWindows())
            | "Blocks" >> Batch()
        )
        return rows, tuple(errors) | "Errors" >> beam.Flatten()
