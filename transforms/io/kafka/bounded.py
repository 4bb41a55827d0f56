"""A bounded read of a Kafka topic: one range per partition, committed once every sink wrote.

See `transforms.io.kafka.read`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.transforms.window import GlobalWindows
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from transforms.io.kafka.read import POLL_SECONDS, KafkaReadError, ReadSettings, to_message

__all__ = ["PROGRESS", "CommitOffsets", "PartitionRange", "bounded_read", "leaves", "share"]

BATCH = 500
PROGRESS = "progress"


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
