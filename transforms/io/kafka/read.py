"""Reading a Kafka topic: bounded reads with commit-after, live reads, and Beam's Java read.

Every record becomes a `Message` (see `to_message`) stamped with the record's timestamp.

Bounded (default): when the pipeline runs (never when the graph is built), one step lists the
topic's partitions and their end (high watermark) offsets, and plans one range per partition,
from the group's committed offset (``start=committed``; the earliest offset where the group has
none), the earliest offset (``start=earliest``) up to that end, shared so that at most
``max_records`` are read in all. The ranges are reshuffled, so runners read partitions in
parallel, and each is read until its end, the partition's end as it is now, or ``max_seconds``.

Nothing is committed while reading: `CommitOffsets` (``KafkaSource.commit_after(...)``, which the
catalog's pipelines apply through `Source.after_write`) commits the offsets each partition was
read up to in a last step that takes every other branch of the pipeline as a side input, so it
runs only after every sink finished. A run that fails commits nothing and the next one reads the
same records again: delivery is at least once.

Live (``live=true``): `LiveKafkaReader`, driven by `transforms.io.live.DirectLiveRead` on the
DirectRunner's streaming engine. It commits the offsets of the records it handed to the runner
only when the pipeline has settled (every one of them written by every sink, dead letters
included; see `transforms.io.live`), at most every `COMMIT_INTERVAL_SECONDS` and once more when
it ends: a run killed at any point reads again, from the committed offsets, every record whose
outputs may not have been written. Delivery is at least once, as for bounded reads.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka import Message as KafkaMessage

from transforms.event_time import format_timestamp
from transforms.io.kafka.client import KafkaConnection
from transforms.message import Message, Origin

__all__ = [
    "BASE64_HEADERS",
    "BASE64_KEY",
    "COMMIT_INTERVAL_SECONDS",
    "IDLE_SKEW_SECONDS",
    "PROGRESS",
    "STARTS",
    "TOMBSTONE",
    "CommitOffsets",
    "KafkaReadError",
    "LiveKafkaReader",
    "PartitionRange",
    "ReadSettings",
    "bounded_read",
    "java_row_to_message",
    "leaves",
    "live_reader",
    "share",
    "to_message",
]

STARTS = ("committed", "earliest", "latest")
TOMBSTONE = "kafka.tombstone"
"""Attribute set to ``true`` on a record whose value is null (a tombstone); its payload is b""."""
BASE64_HEADERS = "kafka.base64_headers"
"""Attribute listing (comma-separated) the headers whose values were not UTF-8, given in base64."""
BASE64_KEY = "kafka.base64_key"
"""Attribute set to ``true`` when the key was not UTF-8 and ``origin.key`` is its base64."""
COMMIT_INTERVAL_SECONDS = 5.0
IDLE_SKEW_SECONDS = 2.0
POLL_SECONDS = 0.2
BATCH = 500
PROGRESS = "progress"
_UNUSED_GROUP = "beam-streaming-suite.no-group"  # librdkafka needs one; nothing is committed
_MIN_SECONDS = float(MIN_TIMESTAMP)


class KafkaReadError(RuntimeError):
    """The topic cannot be read (missing, broker unreachable, a partition error)."""


@dataclass(frozen=True)
class ReadSettings:
    """How a Kafka source reads; picklable.

    Attributes:
        connection: the broker and topic.
        group: the consumer group whose offsets are read and committed, if any.
        start: where partitions start: one of `STARTS`.
        max_records: the most records to read in all, if bounded by count.
        max_seconds: the longest a read lasts, if bounded by time.
        timeout: seconds to wait for the broker before a bounded read fails.

    """

    connection: KafkaConnection
    group: str | None
    start: str
    max_records: int | None
    max_seconds: float | None
    timeout: float

    def consumer(self) -> Consumer:
        """Returns a consumer that never commits by itself (assign, not subscribe)."""
        return Consumer(
            {
                **self.connection.client_config(),
                "group.id": self.group or _UNUSED_GROUP,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "latest" if self.start == "latest" else "earliest",
                "enable.partition.eof": True,
            }
        )

    def start_offsets(self, consumer: Consumer) -> dict[int, tuple[int, int]]:
        """Returns ``{partition: (first offset to read, end offset)}`` as the broker has them now.

        Raises:
            KafkaReadError: the topic does not exist or the broker did not answer in time.

        """
        topic = self.connection.topic
        try:
            metadata = consumer.list_topics(topic, timeout=self.timeout)
        except KafkaException as error:
            raise KafkaReadError(f"{self.connection.where}: cannot list topics: {error}") from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise KafkaReadError(
                f"{self.connection.where}: cannot read topic {topic!r}: "
                f"{found.error if found is not None else 'not found'}; create it first"
            )
        partitions = [TopicPartition(topic, p) for p in sorted(found.partitions)]
        committed: dict[int, int] = {}
        if self.group is not None and self.start == "committed":
            committed = {
                tp.partition: tp.offset
                for tp in consumer.committed(partitions, timeout=self.timeout)
            }
        offsets = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=self.timeout)
            if self.start == "latest":
                first = high
            elif committed.get(tp.partition, OFFSET_INVALID) >= 0:
                first = min(max(committed[tp.partition], low), high)
            else:
                first = low
            offsets[tp.partition] = (first, high)
        return offsets


def _text(raw: bytes) -> tuple[str, bool]:
    """Returns ``(text, False)`` for UTF-8 bytes, else ``(base64 text, True)``."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


def _message(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    millis: int | None,
) -> TimestampedValue:
    attributes: dict[str, str] = {}
    encoded = []
    for name, raw in headers:
        text, was_encoded = _text(raw or b"")
        attributes[name] = text
        if was_encoded:
            encoded.append(name)
    if encoded:
        attributes[BASE64_HEADERS] = ",".join(encoded)
    if value is None:
        attributes[TOMBSTONE] = "true"
    key_text = None
    if key is not None:
        key_text, key_encoded = _text(key)
        if key_encoded:
            attributes[BASE64_KEY] = "true"
    seconds = millis / 1000.0 if millis is not None else time.time()
    origin = Origin(
        "kafka",
        topic=topic,
        partition=partition,
        offset=offset,
        key=key_text,
        publish_time=format_timestamp(seconds) if millis is not None else None,
    )
    return TimestampedValue(Message(value or b"", attributes, origin), seconds)


def to_message(record: KafkaMessage) -> TimestampedValue:
    """Turns one consumed record into a `Message` stamped with the record's timestamp.

    Args:
        record: a record from ``Consumer.consume`` (not an error event).

    Returns:
        ``TimestampedValue(Message(payload=<value>, attributes=<headers as UTF-8>,
        origin=Origin("kafka", topic="t", partition=0, offset=42, key="k1",
        publish_time="2026-11-25T10:00:00.250Z")), <record timestamp>)``. A null value (a
        tombstone) gives payload ``b""`` and attribute ``kafka.tombstone=true``; a header value
        that is not UTF-8 is given in base64 and named in ``kafka.base64_headers``; a key that is
        not UTF-8 is given in base64 with ``kafka.base64_key=true``; a null header value is
        ``""``; of repeated header names the last wins. A record without timestamp is stamped
        with the read time and has no ``publish_time``.

    """
    kind, millis = record.timestamp()
    return _message(
        topic=record.topic() or "",
        partition=record.partition() or 0,
        offset=record.offset() or 0,
        key=record.key(),  # type: ignore[arg-type]
        value=record.value(),  # type: ignore[arg-type]
        headers=record.headers() or [],  # type: ignore[arg-type]  # a list when consumed
        millis=None if kind == TIMESTAMP_NOT_AVAILABLE else millis,
    )


def java_row_to_message(row: Any) -> TimestampedValue:
    """Turns a row of Beam's ``ReadFromKafka(with_metadata=True)`` into a `Message`.

    The row has ``topic, partition, offset, timestamp`` (epoch millis), ``key``, ``value``
    (bytes or ``None``) and ``headers`` (rows of ``key``, ``value``); see `to_message` for the
    `Message`.
    """
    return _message(
        topic=row.topic,
        partition=row.partition,
        offset=row.offset,
        key=row.key,
        value=row.value,
        headers=[(header.key, header.value) for header in row.headers or ()],
        millis=row.timestamp if row.timestamp is not None and row.timestamp >= 0 else None,
    )


class PartitionRange(NamedTuple):
    """The offsets of one partition a bounded read reads: ``start`` up to ``end`` (excluded)."""

    topic: str
    partition: int
    start: int
    end: int


def share(available: Sequence[int], total: int | None) -> list[int]:
    """Shares ``total`` records among partitions holding ``available`` records each.

    Each partition gets as even a share as its records allow (the smallest first, what they
    leave going to the others); ``None`` takes everything. ``share([1, 10, 10], 9)`` is
    ``[1, 4, 4]``.
    """
    if total is None:
        return list(available)
    shares = [0] * len(available)
    remaining = total
    order = sorted(range(len(available)), key=lambda i: available[i])
    for position, index in enumerate(order):
        fair = remaining // (len(order) - position)
        shares[index] = min(available[index], fair)
        remaining -= shares[index]
    return shares


class _PlanRanges(beam.DoFn):
    """Lists the partitions and their end offsets now; yields a `PartitionRange` for each."""

    def __init__(self, settings: ReadSettings) -> None:
        self._settings = settings

    def process(self, unused_impulse: bytes) -> Iterator[PartitionRange]:
        consumer = self._settings.consumer()
        try:
            offsets = self._settings.start_offsets(consumer)
        finally:
            consumer.close()
        partitions = sorted(offsets)
        available = [offsets[p][1] - offsets[p][0] for p in partitions]
        for partition, count in zip(
            partitions, share(available, self._settings.max_records), strict=True
        ):
            first = offsets[partition][0]
            if count > 0:
                yield PartitionRange(
                    self._settings.connection.topic, partition, first, first + count
                )


class _ReadRange(beam.DoFn):
    """Reads one `PartitionRange`; yields `Message`s and, tagged ``progress``, the next offset.

    The ``progress`` output is ``(partition, next offset)``: the offset after the last record
    read, to commit once the records are written.
    """

    def __init__(self, settings: ReadSettings) -> None:
        self._settings = settings

    def setup(self) -> None:
        self._consumer = self._settings.consumer()

    def teardown(self) -> None:
        consumer = getattr(self, "_consumer", None)
        if consumer is not None:
            consumer.close()

    def process(self, part: PartitionRange) -> Iterator[Any]:
        settings = self._settings
        self._consumer.assign([TopicPartition(part.topic, part.partition, part.start)])
        began = heard = time.monotonic()
        position, end = part.start, part.end
        try:
            while position < end:
                now = time.monotonic()
                if settings.max_seconds is not None and now - began >= settings.max_seconds:
                    break
                if now - heard > settings.timeout:
                    raise KafkaReadError(
                        f"{settings.connection.where}: partition {part.partition} sent nothing "
                        f"for {settings.timeout:g}s at offset {position} (reading up to {end})"
                    )
                records = self._consumer.consume(BATCH, timeout=POLL_SECONDS)
                if records:
                    heard = time.monotonic()
                for record in records:
                    offset = record.offset() or 0
                    error = record.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            raise KafkaException(error)
                        # Nothing more to read now (short of ``end`` only while a transaction
                        # is open): stop at the partition's end as it is.
                        position = max(position, min(offset, end))
                        end = position
                        break
                    if offset >= end:
                        position = end
                        break
                    position = offset + 1
                    yield to_message(record)
        finally:
            self._consumer.unassign()
        if position > part.start:
            yield beam.pvalue.TaggedOutput(PROGRESS, (part.partition, position))


class _CommitFn(beam.DoFn):
    """Commits ``[(partition, next offset), ...]`` for the group, in one request."""

    def __init__(self, settings: ReadSettings) -> None:
        self._settings = settings

    def process(self, progress: list[tuple[int, int]], unused_done: Any) -> None:
        if not progress:
            return
        settings = self._settings
        topic = settings.connection.topic
        consumer = settings.consumer()
        try:
            offsets = [TopicPartition(topic, p, offset) for p, offset in sorted(progress)]
            result = consumer.commit(offsets=offsets, asynchronous=False)
        finally:
            consumer.close()
        failed = [tp for tp in result or () if tp.error is not None]
        if failed:
            raise KafkaReadError(
                f"{settings.connection.where}: group {settings.group!r} could not commit "
                f"partition {failed[0].partition}: {failed[0].error}"
            )


def leaves(pipeline: beam.Pipeline) -> list[beam.PCollection]:
    """Returns the PCollections of ``pipeline`` that no step reads: the ends of its branches.

    A step that takes them all as side inputs runs after every other step of the pipeline.
    """
    produced: list[beam.PCollection] = []
    consumed: set[int] = set()

    class Visitor(PipelineVisitor):
        def visit_transform(self, node: AppliedPTransform) -> None:
            produced.extend(
                o for o in node.outputs.values() if isinstance(o, beam.pvalue.PCollection)
            )
            consumed.update(id(i) for i in node.main_inputs.values())
            consumed.update(id(side.pvalue) for side in node.side_inputs)

    pipeline.visit(Visitor())
    return [pcoll for pcoll in produced if id(pcoll) not in consumed]


class CommitOffsets(beam.PTransform):
    """Commits the offsets a bounded read reached, after every ``signals`` PCollection is done.

    Input: the bounded read's ``(partition, next offset)`` pairs. Each signal (typically a
    sink's output, or every branch end of the pipeline, see `leaves`) becomes an empty side
    input, so the commit runs only once all of them are complete; if the pipeline fails first,
    nothing is committed.

    Args:
        settings: the read's settings (its group must be set).
        signals: PCollections whose completion means the records were written.

    """

    def __init__(self, settings: ReadSettings, signals: Sequence[beam.PCollection]) -> None:
        super().__init__()
        if settings.group is None:
            raise ValueError(f"{settings.connection.where}: committing needs group=G")
        self._settings = settings
        self._signals = tuple(signals)

    def expand(self, progress: beam.PCollection) -> beam.PCollection:
        pipeline = progress.pipeline
        ends = [
            signal
            | f"Nothing of {index}" >> beam.FlatMap(lambda _: ())
            | f"Global {index}" >> beam.WindowInto(GlobalWindows())
            for index, signal in enumerate(self._signals)
        ]
        if not ends:
            ends = [pipeline | "No signal" >> beam.Create([])]
        done = tuple(ends) | "All written" >> beam.Flatten()
        return (
            progress
            | "Offsets" >> beam.combiners.ToList()
            | "Commit" >> beam.ParDo(_CommitFn(self._settings), beam.pvalue.AsList(done))
        )


def bounded_read(pbegin: beam.pvalue.PBegin, settings: ReadSettings) -> beam.pvalue.DoOutputsTuple:
    """Adds the bounded read; returns its outputs: `Message`s (main) and ``progress``."""
    return (
        pbegin
        | "Start" >> beam.Impulse()
        | "Partitions" >> beam.ParDo(_PlanRanges(settings))
        | "Spread" >> beam.Reshuffle()
        | "Read partitions"
        >> beam.ParDo(_ReadRange(settings)).with_outputs(PROGRESS, main="messages")
    )


class LiveKafkaReader:
    """A `transforms.io.live.LiveReader` of a topic's partitions, assigned at the first read.

    The watermark is the minimum over partitions of the latest record timestamp seen there; a
    partition that is caught up (at its end) counts as ``now - IDLE_SKEW_SECONDS`` instead, so an
    idle partition does not hold the watermark back; it never goes back. Records arriving later
    with older timestamps are late. The reader is done when ``max_records`` were read or
    ``max_seconds`` passed. It commits the offsets of the records it handed over when told
    that they were written (`settled`), at most every `COMMIT_INTERVAL_SECONDS` until done.
    """

    def __init__(self, settings: ReadSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._consumer: Consumer | None = None
        self._marks: dict[int, float | None] = {}
        self._idle: set[int] = set()
        self._next: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._read = 0
        self._began = 0.0
        self._last_commit = 0.0
        self._watermark = _MIN_SECONDS
        self._done = False

    def _open(self) -> Consumer:
        consumer = self._settings.consumer()
        offsets = self._settings.start_offsets(consumer)
        topic = self._settings.connection.topic
        consumer.assign([TopicPartition(topic, p, first) for p, (first, _) in offsets.items()])
        self._marks = {partition: None for partition in offsets}
        self._began = self._last_commit = time.monotonic()
        return consumer

    def read(self, limit: int) -> list[TimestampedValue]:
        """Returns up to ``limit`` records available now (waits at most `POLL_SECONDS`)."""
        if self._done:
            return []
        if self._consumer is None:
            self._consumer = self._open()
        if self._settings.max_records is not None:
            limit = min(limit, self._settings.max_records - self._read)
        elements = []
        for record in self._consumer.consume(limit, timeout=POLL_SECONDS) if limit > 0 else []:
            partition = record.partition() or 0
            error = record.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                self._idle.add(partition)
                continue
            self._idle.discard(partition)
            element = to_message(record)
            self._next[partition] = (record.offset() or 0) + 1
            mark = self._marks.get(partition)
            seconds = float(element.timestamp)
            self._marks[partition] = seconds if mark is None else max(mark, seconds)
            elements.append(element)
        self._read += len(elements)
        self._advance_watermark()
        settings = self._settings
        elapsed = time.monotonic() - self._began
        self._done = (settings.max_records is not None and self._read >= settings.max_records) or (
            settings.max_seconds is not None and elapsed >= settings.max_seconds
        )
        return elements

    def settled(self) -> None:
        """Commits the offsets of everything read so far: the pipeline has written it all."""
        if self._consumer is None:
            return
        if self._done or time.monotonic() - self._last_commit >= COMMIT_INTERVAL_SECONDS:
            self._commit()
        if self._done:
            self._consumer.close()
            self._consumer = None

    def _advance_watermark(self) -> None:
        idle_mark = self._clock() - IDLE_SKEW_SECONDS
        marks = []
        for partition, mark in self._marks.items():
            if partition in self._idle:
                mark = idle_mark if mark is None else max(mark, idle_mark)
            if mark is None:
                return  # a partition not heard from yet holds the watermark
            marks.append(mark)
        if marks:
            self._watermark = max(self._watermark, min(marks))

    def _commit(self) -> None:
        self._last_commit = time.monotonic()
        if self._settings.group is None or self._consumer is None:
            return
        changed = {p: o for p, o in self._next.items() if self._committed.get(p) != o}
        if not changed:
            return
        topic = self._settings.connection.topic
        self._consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in sorted(changed.items())],
            asynchronous=False,
        )
        self._committed.update(changed)

    @property
    def watermark(self) -> float:
        """No record read later has a timestamp before this (epoch seconds), barring late ones."""
        return self._watermark

    @property
    def done(self) -> bool:
        """Whether ``max_records`` were read or ``max_seconds`` passed."""
        return self._done


def live_reader(settings: ReadSettings) -> Callable[[], LiveKafkaReader]:
    """Returns a picklable factory of the live reader (made on the runner at the first read)."""
    return functools.partial(LiveKafkaReader, settings)
