"""Stream-stream join: pairs of records of two streams with the same key within a time span.

``clicks x impressions within 5 minutes``: a left and a right record join when they have the
same values of the ``on`` fields and their event times are at most ``within`` seconds apart
(either one first), as ksqlDB's ``JOIN ... WITHIN 5 MINUTES``. Both sides are `Block`s of
`Record`s, each record's time its ``event_time`` (or its block's timestamp when it has none).
Each pair comes out once, in a block, when its second record arrives, its event time the later
of the two::

    Record(data={"ad_id": "a1",                                    # the on fields
                 "click": {"ad_id": "a1", "user_id": "u1", ...},    # the left record's data
                 "impression": {"ad_id": "a1", "campaign_id": "c9", ...}},
           origin=<the left record's message>, event_time=<the later event time>)

A record's window is ``[t - within, t + within]`` around its event time ``t``; it closes when
the watermark passes ``t + within + allowed_lateness``. Then a record that never joined is
emitted alone (the other side ``None``, its event time the closing time) for ``left`` joins
(left records) and ``outer`` joins (both sides), or dropped and counted in
``dropped.unmatched`` (right records of ``left`` joins, both sides of ``inner`` joins). A record
without the ``on`` fields, or whose ``on`` values are not JSON (bytes, a set, as a UDF may give),
joins nothing and is settled at once the same way.

Late records, those arriving after their key's windows up to their own had closed, are
dead-lettered with reason ``late``: the records they could have joined are gone. (A key's first
record cannot be judged late, there is no closed window for it yet.) State is kept per key:
the open records of each side and the time up to which windows have closed; a block's records
of one key reach it together.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import FloatCoder, PickleCoder
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import Timestamp

from transforms.blocks import Block
from transforms.dead_letter import error_record
from transforms.event_time import format_timestamp
from transforms.message import Record
from transforms.metrics import DROPPED, ReasonCounters

__all__ = ["JOIN_TYPES", "UNMATCHED", "WindowedJoin"]

JOIN_TYPES = ("inner", "left", "outer")
UNMATCHED = "unmatched"
ERRORS = "errors"
_OUT = "out"  # records settled before the join (no key)
_LEFT, _RIGHT = 0, 1

_Tagged = tuple[int, Block]  # a block of one side: (side, block)
# An open record: [event time, record, joined yet].
_Entry = list[Any]


class _Shape:
    """How output records look and which unmatched records are kept; shared by the DoFns."""

    def __init__(self, on: tuple[str, ...], names: tuple[str, str], how: str) -> None:
        self.on = on
        self.names = names
        self.keeps = (how in ("left", "outer"), how == "outer")

    def key(self, data: dict[str, Any]) -> str | None:
        values = [data.get(name) for name in self.on]
        if any(v is None for v in values):
            return None
        try:
            return json.dumps(values, sort_keys=True)
        except (TypeError, ValueError):  # not JSON (bytes, a set...): no key, as a missing one
            return None

    def pair(self, left: Record | None, right: Record | None, event_time: float) -> Record:
        either = left if left is not None else right
        assert either is not None
        data: dict[str, Any] = {name: either.data.get(name) for name in self.on}
        data[self.names[_LEFT]] = None if left is None else left.data
        data[self.names[_RIGHT]] = None if right is None else right.data
        origin = left.origin if left is not None and left.origin is not None else either.origin
        return Record(data, origin, event_time)

    def alone(self, side: int, record: Record, event_time: float) -> Record:
        if side == _LEFT:
            return self.pair(record, None, event_time)
        return self.pair(None, record, event_time)


@beam.typehints.with_output_types(tuple[str, Any], out=Block)
class _KeyBySide(beam.DoFn):
    """``(side, Block)`` -> ``(key, (side, [(event time, record)...]))`` per key of the block.

    Keyless records are settled here: emitted alone (on ``out``) or dropped.
    """

    def __init__(self, shape: _Shape) -> None:
        self._shape = shape

    def setup(self) -> None:
        self._dropped = ReasonCounters(DROPPED)

    def process(
        self, element: tuple[int, list[Record]], timestamp=beam.DoFn.TimestampParam
    ) -> Iterator[Any]:
        side, block = element
        keyed: dict[str, list[tuple[float, Record]]] = {}
        alone = Block()
        for record in block:
            event_time = float(timestamp) if record.event_time is None else record.event_time
            key = self._shape.key(record.data)
            if key is not None:
                keyed.setdefault(key, []).append((event_time, record))
            elif self._shape.keeps[side]:
                alone.append(self._shape.alone(side, record, event_time))
            else:
                self._dropped.inc(UNMATCHED)
        for key, records in keyed.items():
            yield key, (side, records)
        if alone:
            yield TaggedOutput(_OUT, alone)


@beam.typehints.with_output_types(Block, errors=Any)
class _IntervalJoinFn(beam.DoFn):
    """Keeps each key's open records; joins arrivals; settles records whose window closed."""

    OPEN = ReadModifyWriteStateSpec("open", PickleCoder())  # [left entries, right entries]
    CLOSED = ReadModifyWriteStateSpec("closed", FloatCoder())  # windows closed up to here
    CLOSE = TimerSpec("close", TimeDomain.WATERMARK)

    def __init__(self, shape: _Shape, within: float, lateness: float, pipeline: str) -> None:
        self._shape = shape
        self._within = within
        self._lateness = lateness
        self._pipeline = pipeline

    def setup(self) -> None:
        self._dropped = ReasonCounters(DROPPED)

    def _expiry(self, event_time: float) -> float:
        return event_time + self._within + self._lateness

    def process(
        self,
        element: tuple[str, tuple[int, list[tuple[float, Record]]]],
        open_state=beam.DoFn.StateParam(OPEN),
        closed_state=beam.DoFn.StateParam(CLOSED),
        close=beam.DoFn.TimerParam(CLOSE),
    ) -> Iterator[Any]:
        _, (side, arrivals) = element
        closed = closed_state.read()
        entries: list[list[_Entry]] = open_state.read() or [[], []]
        pairs = Block()
        added = False
        for event_time, record in arrivals:
            if closed is not None and self._expiry(event_time) <= closed:
                yield TaggedOutput(ERRORS, self._late(record, event_time, closed))
                continue
            joined = False
            for other in entries[1 - side]:
                if abs(other[0] - event_time) <= self._within:
                    other[2] = joined = True
                    left, right = (record, other[1]) if side == _LEFT else (other[1], record)
                    pairs.append(self._shape.pair(left, right, max(event_time, other[0])))
            entries[side].append([event_time, record, joined])
            added = True
        if added:
            open_state.write(entries)
            close.set(Timestamp.of(min(self._expiry(e[0]) for es in entries for e in es)))
        if pairs:
            yield pairs

    @on_timer(CLOSE)
    def on_close(
        self,
        fired=beam.DoFn.TimestampParam,
        open_state=beam.DoFn.StateParam(OPEN),
        closed_state=beam.DoFn.StateParam(CLOSED),
        close=beam.DoFn.TimerParam(CLOSE),
    ) -> Iterator[Any]:
        now = float(fired)
        closed_state.write(now)
        entries: list[list[_Entry]] = open_state.read() or [[], []]
        still_open: list[list[_Entry]] = [[], []]
        alone = Block()
        for side in (_LEFT, _RIGHT):
            for entry in entries[side]:
                if self._expiry(entry[0]) > now:
                    still_open[side].append(entry)
                elif entry[2]:
                    continue
                elif self._shape.keeps[side]:
                    alone.append(self._shape.alone(side, entry[1], now))
                else:
                    self._dropped.inc(UNMATCHED)
        if alone:
            yield alone
        if still_open[_LEFT] or still_open[_RIGHT]:
            open_state.write(still_open)
            close.set(Timestamp.of(min(self._expiry(e[0]) for es in still_open for e in es)))
        else:
            open_state.clear()

    def _late(self, record: Record, event_time: float, closed: float) -> dict[str, Any]:
        return error_record(
            record,
            pipeline=self._pipeline,
            step="join",
            reason="late",
            error_type="LateRecord",
            error_message=(
                f"event time {format_timestamp(event_time)} is too late: the join windows of "
                f"its key closed up to {format_timestamp(closed)} (within {self._within:g}s, "
                f"allowed lateness {self._lateness:g}s)"
            ),
            event_timestamp=event_time,
        )


class WindowedJoin(beam.PTransform):
    """Joins two streams of `Block`s of `Record`s on key fields within a span of event time.

    Applied to ``(left, right)``; returns ``(joined, errors)``: `Block`s of joined `Record`s as
    this module shows, and dead-letter dicts of late records (reason ``late``). Both come out
    in the global window.

    Args:
        on: the key fields, present in the records of both sides.
        within: the most seconds between the event times of two records that join.
        how: ``inner``, ``left`` or ``outer``.
        names: the fields the left and right records' data go under.
        allowed_lateness: seconds a window stays open after the watermark passed it.
        pipeline: the pipeline's name, for the dead-letter records.
    """

    def __init__(
        self,
        on: str | tuple[str, ...],
        within: float,
        how: str = "inner",
        names: tuple[str, str] = ("left", "right"),
        allowed_lateness: float = 0.0,
        pipeline: str = "join",
    ) -> None:
        super().__init__()
        on = (on,) if isinstance(on, str) else tuple(on)
        if not on or not all(on):
            raise ValueError("join: name the key fields (on)")
        if within <= 0 or allowed_lateness < 0:
            raise ValueError("join: within must be positive and allowed_lateness not negative")
        if how not in JOIN_TYPES:
            raise ValueError(f"join: how {how!r}: use one of {JOIN_TYPES}")
        if len(set(names)) != 2 or set(names) & set(on) or not all(names):
            raise ValueError(f"join: names {names} must be two distinct fields, not key fields")
        self.shape = _Shape(on, names, how)
        self.within = within
        self.allowed_lateness = allowed_lateness
        self.pipeline_name = pipeline

    def expand(
        self, sides: tuple[beam.PCollection, beam.PCollection]
    ) -> tuple[beam.PCollection, beam.PCollection]:
        left, right = sides
        tagged = (
            left | "Tag left" >> beam.Map(lambda block: (_LEFT, block)).with_output_types(_Tagged),
            right
            | "Tag right" >> beam.Map(lambda block: (_RIGHT, block)).with_output_types(_Tagged),
        )
        keyed = (
            tagged
            | "Both sides" >> beam.Flatten()
            | "Global window" >> beam.WindowInto(GlobalWindows())
            | "Key" >> beam.ParDo(_KeyBySide(self.shape)).with_outputs(_OUT, main="keyed")
        )
        joined = keyed.keyed | "Join" >> beam.ParDo(
            _IntervalJoinFn(self.shape, self.within, self.allowed_lateness, self.pipeline_name)
        ).with_outputs(ERRORS, main="joined")
        records = (joined.joined, keyed[_OUT]) | "With keyless" >> beam.Flatten()
        return records, joined[ERRORS]
