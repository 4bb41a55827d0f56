"""Reading a Kafka topic: bounded reads with commit-after, live reads, and Beam's Java read.

Every record becomes a `Message` (see `to_message`) stamped with the record's timestamp.

Before either read is added to a graph that runs here (the DirectRunner), `check_topic` asks the
brokers once, within `CHECK_SECONDS`, whether the topic exists: a broker that does not answer or
a missing topic is an `EndpointError` before anything runs (on Dataflow and Flink, where the
workers read, the graph builds without a broker).

Bounded (default): when the pipeline runs, one step lists the topic's partitions and their end
(high watermark) offsets, and plans one range per partition, from the group's committed offset
(``start=committed``; the earliest offset where the group has none), the earliest offset
(``start=earliest``) up to that end, shared so that at most
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

This module holds what every read shares: its settings and the `Message`s it makes; the
bounded read is in `transforms.io.kafka.bounded`, the live one in `transforms.io.kafka.live`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from apache_beam.transforms.window import TimestampedValue
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
from transforms.io.endpoint import EndpointError, redact
from transforms.io.kafka.client import KafkaConnection
from transforms.message import Message, Origin
from transforms.secrets import SecretError

__all__ = [
    "BASE64_HEADERS",
    "BASE64_KEY",
    "CHECK_SECONDS",
    "STARTS",
    "TOMBSTONE",
    "KafkaReadError",
    "ReadSettings",
    "check_topic",
    "java_row_to_message",
    "to_message",
]

STARTS = ("committed", "earliest", "latest")
TOMBSTONE = "kafka.tombstone"
"""Attribute set to ``true`` on a record whose value is null (a tombstone); its payload is b""."""
BASE64_HEADERS = "kafka.base64_headers"
"""Attribute listing (comma-separated) the headers whose values were not UTF-8, given in base64."""
BASE64_KEY = "kafka.base64_key"
"""Attribute set to ``true`` when the key was not UTF-8 and ``origin.key`` is its base64."""
POLL_SECONDS = 0.2
CHECK_SECONDS = 5.0
"""The longest `check_topic` waits for the brokers (less with a smaller ``timeout``)."""
_UNUSED_GROUP = "beam-streaming-suite.no-group"  # librdkafka needs one; nothing is committed


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


def check_topic(settings: ReadSettings) -> None:
    """Checks, with one metadata request, that the brokers answer and the topic exists.

    librdkafka's own log lines are silenced for the check; the first connection error it
    reports goes into the message instead. Called where the graph is built, before anything
    runs (`transforms.io.kafka.endpoints.KafkaSource`).

    Raises:
        EndpointError: no broker answered within `CHECK_SECONDS` (or ``timeout``, if less),
            the topic does not exist or cannot be read, or the password reference cannot be
            resolved. The message names the redacted URI and what to change.

    """
    connection = settings.connection
    where, topic = connection.where, connection.topic
    seconds = min(settings.timeout, CHECK_SECONDS)
    errors: list[KafkaError] = []
    try:
        config = connection.client_config()
    except SecretError as error:
        raise EndpointError(f"{where}: {error}") from None
    # A consumer, as the read's: an admin client's metadata request would create the topic
    # on brokers that create topics on demand.
    consumer = Consumer(
        {
            **config,
            "group.id": _UNUSED_GROUP,
            "enable.auto.commit": False,
            "allow.auto.create.topics": False,
            "log_level": 0,
            "error_cb": errors.append,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=seconds)
    except KafkaException as error:
        consumer.poll(0)  # serves error_cb: why the brokers did not answer
        reasons = [e for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN] or errors
        reason = reasons[0].str() if reasons else error.args[0].str()
        raise EndpointError(
            f"{where}: no Kafka broker answered within {seconds:g}s ({redact(reason)}): check "
            f"the HOST:PORT list ({connection.bootstrap}), that the brokers are up and the "
            "security settings"
        ) from None
    finally:
        consumer.close()
    found = metadata.topics.get(topic)
    if found is not None and found.error is None:
        return
    if found is None or found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        raise EndpointError(
            f"{where}: no topic {topic!r} on the brokers at {connection.bootstrap}: create the "
            f"topic first: kafka-topics.sh --bootstrap-server {connection.bootstrap} --create "
            f"--topic {topic} --partitions N"
        )
    if found.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise EndpointError(
            f"{where}: may not read topic {topic!r} ({redact(found.error.str())}): grant the "
            "client Describe and Read on it (ACLs), or check the user name"
        )
    # Anything else (a leader being elected for a topic just created...) passes: the read
    # waits for the brokers itself.


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
