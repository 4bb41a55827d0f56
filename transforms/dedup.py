"""Dedup: drops repeated records, judged by an id, within a span of event or processing time.

The id of a record (`DedupKey`) is a field (``transaction_id``, dotted for nested fields), the
message id of its source (``@message_id``: Pub/Sub), or its source coordinates (``@source``:
Kafka topic, partition and offset; Kinesis stream, shard and sequence; file path and line...),
which catches a message read twice. A record without an id, or whose id is not JSON (bytes, a
set, a number too long for text, as a UDF may give), is never a duplicate. Ids compare by JSON
type and text: the number ``1``, the text ``"1"`` and the number ``1.0`` are three ids, as are
``true`` and ``"true"`` (a copy carries the same bytes; two ids that only look alike are two
records, and dropping one would lose it).

Input and output are `Block`s of `Record`s; a block's records of one id reach the state
together, in order. A record's time is its ``event_time`` (its block's timestamp when it has
none).

Event time (the default): a record is a duplicate when its event time is less than ``within``
seconds from that of a record kept with the same id; the first copy to arrive is kept. The
memory of a kept record ends when the watermark passes its event time plus ``within``, so a copy
arriving after that is kept again. Processing time: a record is a duplicate when its id was kept
less than ``within`` seconds of processing time before it arrived.

Each duplicate is dropped and counted in ``dropped.duplicate``. The state is per id and window:
records usually arrive in the global window.

Beam's ``DeduplicatePerKey`` has the same state and timer layout but is not used: it drops
duplicates without a count (the balance ``read = written + dead_lettered + dropped`` could not
hold), and its event-time span is only a timer, so in a batch run (where the watermark stays
back until the input ends) every copy of an id is dropped however far apart the copies are.
Comparing event times here keeps the span exact on every runner.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder, FloatCoder, ListCoder
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.blocks import Block
from transforms.message import Record
from transforms.metrics import DROPPED, ReasonCounters

__all__ = ["DUPLICATE", "TIME_DOMAINS", "Dedup", "DedupKey"]

DUPLICATE = "duplicate"
TIME_DOMAINS = ("event_time", "processing_time")
_UNKEYED = "unkeyed"
_MESSAGE_ID, _SOURCE = "@message_id", "@source"


@dataclass(frozen=True)
class DedupKey:
    """What identifies a record: a field path, ``@message_id`` or ``@source``.

    Attributes:
        spec: as written: ``transaction_id``, ``meta.id``, ``@message_id`` or ``@source``.
    """

    spec: str

    def __post_init__(self) -> None:
        if not self.spec or (self.spec.startswith("@") and self.spec not in (_MESSAGE_ID, _SOURCE)):
            raise ValueError(
                f"dedup key {self.spec!r}: use a field name, {_MESSAGE_ID} or {_SOURCE}"
            )

    def of(self, record: Record) -> str | None:
        """Returns the record's id as text, or ``None`` when it has none.

        A field's text is marked with a leading ``"`` (JSON text of any other value never
        starts with one), so the text ``"1"`` and the number ``1`` are two ids.
        """
        if self.spec in (_MESSAGE_ID, _SOURCE):
            message = record.origin
            if message is None:
                return None
            if self.spec == _MESSAGE_ID:
                return message.origin.message_id
            return json.dumps(message.origin.to_dict(), sort_keys=True)
        value: Any = record.data
        for part in self.spec.split("."):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        if value is None:
            return None
        if isinstance(value, str):
            return '"' + value
        try:
            return json.dumps(value, sort_keys=True)
        except (TypeError, ValueError):  # not JSON: no id
            return None


@beam.typehints.with_output_types(tuple[str, Any], unkeyed=Block)
class _KeyById(beam.DoFn):
    """Block -> ``(id, [(time, record)...])`` per id; the records without an id on ``unkeyed``."""

    def __init__(self, key: DedupKey) -> None:
        self._key = key

    def process(self, block: list[Record], timestamp=beam.DoFn.TimestampParam) -> Iterator[Any]:
        by_id: dict[str, list[tuple[float, Record]]] = {}
        unkeyed = Block()
        for record in block:
            record_id = self._key.of(record)
            if record_id is None:
                unkeyed.append(record)
                continue
            at = float(timestamp) if record.event_time is None else record.event_time
            by_id.setdefault(record_id, []).append((at, record))
        yield from by_id.items()
        if unkeyed:
            yield TaggedOutput(_UNKEYED, unkeyed)


@beam.typehints.with_output_types(Block)
class _EventTimeDedupFn(beam.DoFn):
    """Keeps a record unless a kept copy's event time is less than ``within`` from its own."""

    KEPT = ReadModifyWriteStateSpec("kept", ListCoder(FloatCoder()))  # event times kept
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, within: float) -> None:
        self._within = within

    def setup(self) -> None:
        self._dropped = ReasonCounters(DROPPED)

    def process(
        self,
        element: tuple[str, list[tuple[float, Record]]],
        kept=beam.DoFn.StateParam(KEPT),
        forget=beam.DoFn.TimerParam(FORGET),
    ) -> Iterator[Block]:
        times = kept.read() or []
        out = Block()
        for event_time, record in element[1]:
            if any(abs(event_time - other) < self._within for other in times):
                self._dropped.inc(DUPLICATE)
                continue
            times.append(event_time)
            out.append(record)
        if out:
            kept.write(times)
            forget.set(Timestamp.of(min(times)) + Duration.of(self._within))
            yield out

    @on_timer(FORGET)
    def on_forget(
        self,
        fired=beam.DoFn.TimestampParam,
        kept=beam.DoFn.StateParam(KEPT),
        forget=beam.DoFn.TimerParam(FORGET),
    ) -> None:
        now = float(fired)
        times = [other for other in kept.read() or [] if other + self._within > now]
        if times:
            kept.write(times)
            forget.set(Timestamp.of(min(times)) + Duration.of(self._within))
        else:
            kept.clear()


@beam.typehints.with_output_types(Block)
class _ProcessingTimeDedupFn(beam.DoFn):
    """Keeps a record unless its id was kept less than ``within`` seconds ago."""

    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    FORGET = TimerSpec("forget", TimeDomain.REAL_TIME)

    def __init__(self, within: float) -> None:
        self._within = within

    def setup(self) -> None:
        self._dropped = ReasonCounters(DROPPED)

    def process(
        self,
        element: tuple[str, list[tuple[float, Record]]],
        seen=beam.DoFn.StateParam(SEEN),
        forget=beam.DoFn.TimerParam(FORGET),
    ) -> Iterator[Block]:
        copies = element[1]
        if seen.read():
            self._dropped.inc(DUPLICATE, len(copies))
            return
        if len(copies) > 1:
            self._dropped.inc(DUPLICATE, len(copies) - 1)
        seen.write(True)
        forget.set(Timestamp.now() + Duration.of(self._within))
        yield Block([copies[0][1]])

    @on_timer(FORGET)
    def on_forget(self, seen=beam.DoFn.StateParam(SEEN)) -> None:
        seen.clear()


class Dedup(beam.PTransform):
    """Drops repeated `Record`s (see this module); input and output are `Block`s of them.

    Args:
        key: what identifies a record: a field, ``@message_id`` or ``@source``.
        within: the span, in seconds, within which a repeated id is a duplicate.
        time_domain: ``event_time`` (records carry their ``event_time``) or
            ``processing_time``.
    """

    def __init__(self, key: str, within: float, time_domain: str = "event_time") -> None:
        super().__init__()
        if within <= 0:
            raise ValueError(f"dedup: within must be positive, got {within}")
        if time_domain not in TIME_DOMAINS:
            raise ValueError(f"dedup: time_domain {time_domain!r}: use one of {TIME_DOMAINS}")
        self.key = DedupKey(key)
        self.within = within
        self.time_domain = time_domain

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        keyed = blocks | "Key by id" >> beam.ParDo(_KeyById(self.key)).with_outputs(
            _UNKEYED, main="keyed"
        )
        fn: beam.DoFn = (
            _EventTimeDedupFn(self.within)
            if self.time_domain == "event_time"
            else _ProcessingTimeDedupFn(self.within)
        )
        kept = keyed.keyed | "Drop duplicates" >> beam.ParDo(fn)
        return (kept, keyed[_UNKEYED]) | "With records without id" >> beam.Flatten()
