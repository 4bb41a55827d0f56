"""Sessions per key: bursts of activity separated by more than a gap, one row per session.

A session row (``key_field="user_id"``, ``include_fields=("page",)``)::

    {"user_id": "u1",
     "session_start": "2026-11-25T10:00:00Z",   # the first event's time
     "session_end": "2026-11-25T10:12:30Z",     # the LAST event's time (not last + gap)
     "event_count": 7, "duration_s": 750.0,     # end - start
     "first_page": "/home", "last_page": "/cart",
     "timing": "ON_TIME"}                       # EARLY, ON_TIME or LATE pane
 Built on `transforms.aggregate.windowed.WindowedAggregate` with session windows, which merges
sessions that an out-of-order event bridges, fires early and late panes, and dead-letters records
too
late for their session (reason ``late``). Beam's session window ends a gap after the last
event, so the first and last events are found inside the aggregate instead: each event carries
a stamp, its event time in microseconds as fixed-width text followed by the JSON of its
included fields, and the session takes the ``min`` and ``max`` stamp (text order is time
order; events at the same instant are ordered by their fields' JSON). Records without the key
are dead-lettered with reason ``missing_key``, records whose key is a list, an object or a
number that is not finite with ``bad_key``, and records whose session would end after the last
time Beam and the rows can hold (a gap after the event) with ``bad_timestamp``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from transforms.aggregate.spec import AggregateCall, AggregateSpec, TriggerSpec, WindowSpec
from transforms.aggregate.windowed import WindowedAggregate
from transforms.blocks import Block
from transforms.dead_letter import refused
from transforms.errors import BadTimestamp, RecordError
from transforms.event_time import format_timestamp
from transforms.message import Record
from transforms.schema import Field, Schema

__all__ = [
    "BadKey",
    "MissingKey",
    "SessionSpec",
    "Sessionize",
    "session_schema",
]

STAMP = "_session_stamp"
FIRST = "_session_first"
LAST = "_session_last"
ROW_FIELDS = ("session_start", "session_end", "event_count", "duration_s", "timing")
# Event times in microseconds, shifted to be positive, as 19 digits: text order is time order
# over the whole range of event times (years 1 to 9999).
_SHIFT_MICROS = 10**17
_DIGITS = 19


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
        if "." in self.key_field:
            raise ValueError(
                f"key field {self.key_field!r} is a nested path: sessions are keyed by a "
                "top-level field (copy a nested value to one with a UDF)"
            )
        if self.gap < 0.001:
            # Beam's window coder holds whole milliseconds: a finer gap is not kept.
            raise ValueError(f"the session gap must be 1ms or more, got {self.gap:g}s")
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

    def aggregate_spec(self) -> AggregateSpec:
        """Returns the session-window aggregation of event stamps that the rows come from."""
        return AggregateSpec(
            window=WindowSpec("session", gap=self.gap),
            aggregates=(
                AggregateCall.parse("event_count", "count()"),
                AggregateCall.parse(FIRST, f"min({STAMP})"),
                AggregateCall.parse(LAST, f"max({STAMP})"),
            ),
            group_by=(self.key_field,),
            allowed_lateness=self.allowed_lateness,
            trigger=TriggerSpec(early_seconds=self.early_seconds),
        )


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


@beam.typehints.with_output_types(Block)
class _Stamp(beam.DoFn):
    """A block of `Record`s -> the block of ``Record({key_field: key, STAMP: stamp}, origin)``.

    A record without the key, with a key that cannot group sessions, or whose session would end
    out of range goes to the ``missing`` output as a dead-letter dict. A record without an event
    time takes its block's timestamp.
    """

    def __init__(self, spec: SessionSpec, pipeline: str) -> None:
        self._spec = spec
        self._pipeline = pipeline

    def process(
        self, block: list[Record], timestamp: Any = beam.DoFn.TimestampParam
    ) -> Iterator[Any]:
        stamped = Block()
        for record in block:
            event_time = record.event_time
            if event_time is None:
                event_time = float(timestamp)
            try:
                # int(seconds * 1e6) is how Beam's Timestamp turns the event time into micros.
                stamped.append(self._stamped(record, int(event_time * 1e6), event_time))
            except RecordError as error:
                yield self._rejected(record, event_time, error)
        if stamped:
            yield stamped

    def _stamped(self, record: Record, micros: int, event_time: float) -> Record:
        """Returns the stamped record; raises `MissingKey`, `BadKey` or `BadTimestamp`."""
        name = self._spec.key_field
        key = record.data.get(name)
        if key is None:
            raise MissingKey(f"the record has no value for key field {name!r}")
        if isinstance(key, (list, dict)) or (isinstance(key, float) and not math.isfinite(key)):
            raise BadKey(f"key field {name!r} holds {str(key)[:64]}: a key is a string or number")
        try:
            format_timestamp(event_time + self._spec.gap)
        except OverflowError:
            raise BadTimestamp(
                f"event time {format_timestamp(event_time)}: its session would end "
                f"{self._spec.gap:g}s later, after the last time a row can hold"
            ) from None
        fields = {name: record.data.get(name) for name in self._spec.include_fields}
        return Record({name: key, STAMP: _stamp(micros, fields)}, record.origin, event_time)

    def _rejected(
        self, record: Record, event_time: float, error: RecordError
    ) -> beam.pvalue.TaggedOutput:
        return beam.pvalue.TaggedOutput(
            "missing",
            refused(
                record, pipeline=self._pipeline, step="sessions", error=error, event_time=event_time
            ),
        )


@beam.typehints.with_output_types(Block)
class _ToSessionRow(beam.DoFn):
    """A block of aggregate rows of session windows -> the block of session rows."""

    def __init__(self, spec: SessionSpec) -> None:
        self._spec = spec

    def process(self, block: list[Record]) -> Iterator[Block]:
        # A window of the chaining markers alone (no event of its own) is no session.
        yield Block([self._row(row) for row in block if row.data["event_count"]])

    def _row(self, aggregate: Record) -> Record:
        row = aggregate.data
        start, first = _unstamp(row[FIRST])
        end, last = _unstamp(row[LAST])
        session: dict[str, Any] = {
            self._spec.key_field: row[self._spec.key_field],
            "session_start": format_timestamp(start / 1e6),
            "session_end": format_timestamp(end / 1e6),
            "event_count": row["event_count"],
            "duration_s": (end - start) / 1e6,
        }
        for name in self._spec.include_fields:
            session[f"first_{name}"] = first.get(name)
        for name in self._spec.include_fields:
            session[f"last_{name}"] = last.get(name)
        session["timing"] = row["timing"]
        return Record(session, None, aggregate.event_time)


class Sessionize(beam.PTransform):
    """Groups `Record`s into sessions per key; one row per session (and pane).

    Input: blocks of `Record`s with their event times (as `ParseJson` emits them). Returns
    ``(rows, errors)``: ``rows`` are blocks of `Record`s holding session rows (see this module);
    ``errors`` are dead-letter dicts of records without the key (``missing_key``), with a key
    that cannot group (``bad_key``), whose session would end out of range (``bad_timestamp``)
    or too late for their session (``late``). Records that enter a session are counted as
    ``aggregated``.

    Args:
        spec: what makes a session.
        pipeline: the pipeline's name, for the dead-letter records.
    """

    def __init__(self, spec: SessionSpec, pipeline: str) -> None:
        super().__init__()
        self._spec = spec
        self._pipeline = pipeline

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        stamped = blocks | "Stamp" >> beam.ParDo(_Stamp(self._spec, self._pipeline)).with_outputs(
            "missing", main="stamped"
        )
        aggregates, late = stamped.stamped | "Sessions" >> WindowedAggregate(
            self._spec.aggregate_spec(), self._pipeline
        )
        rows = aggregates | "Rows" >> beam.ParDo(_ToSessionRow(self._spec))
        return rows, (stamped.missing, late) | "Errors" >> beam.Flatten()
