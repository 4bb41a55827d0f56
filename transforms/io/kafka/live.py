"""A live read of a Kafka topic on the DirectRunner's streaming engine.

See `transforms.io.kafka.read`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from transforms.io.kafka.read import POLL_SECONDS, ReadSettings, to_message

__all__ = ["COMMIT_INTERVAL_SECONDS", "IDLE_SKEW_SECONDS", "LiveKafkaReader", "live_reader"]

COMMIT_INTERVAL_SECONDS = 5.0
IDLE_SKEW_SECONDS = 2.0
_MIN_SECONDS = float(MIN_TIMESTAMP)


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
