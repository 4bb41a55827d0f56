"""Writing records to a Kafka topic with an idempotent producer; failures dead-lettered.

Each record is sent as one Kafka record: the value is ``record.data`` as JSON (bytes as
base64; for a sink of original messages, `SinkContext.raw`, the original payload), the key
the text of field ``key=<field>`` (no key when the parameter is absent or the field missing or
null), the headers the attributes of the message the record came from plus the
record fields named in ``attributes=f1,f2`` (strings as they are, other values as JSON).

The producer is idempotent (``enable.idempotence=true``, ``acks=all``): its own retries do not
duplicate records. A retried bundle sends its records again, so delivery is at least once.
Each bundle waits, in ``finish_bundle``, up to ``timeout`` seconds for its delivery reports;
records not confirmed by then are taken out of the producer's queue when still there (one
already on the wire may still arrive: a replay can duplicate it) and, with the records that
failed transiently, produced again with backoff (`transforms.io.retry`): until they are
delivered by default (``attempts=forever``), or up to N times with ``attempts=N``, after which
they are dead-lettered as ``sink_unavailable``. A record the broker refuses, or a missing
topic, is dead-lettered at once.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.utils.windowed_value import WindowedValue
from confluent_kafka import KafkaError, KafkaException, Producer

from transforms import metrics
from transforms.errors import SinkRejected
from transforms.io.base import Sink, SinkContext, message_payload
from transforms.io.batching import SINK_UNAVAILABLE, Pending, dead_letter
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.kafka.client import CONNECTION_PARAMS, KafkaConnection
from transforms.io.redis.text import to_text
from transforms.io.retry import RetryPolicy
from transforms.message import Record

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "KafkaSink", "KafkaWriteError"]

DEFAULT_MAX_MESSAGE_BYTES = 1_000_000  # librdkafka's and Kafka's default
MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES = 1_000, 1_000_000_000
DEFAULT_TIMEOUT = 30.0
_PARAMS = CONNECTION_PARAMS | {"key", "attributes", "timeout", "attempts", "max_message_bytes"}
# Delivery errors caused by the record itself rather than by the topic or the broker.
_REJECTED_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError._INVALID_ARG,
        KafkaError._BAD_MSG,
    }
)


class KafkaWriteError(RuntimeError):
    """The topic cannot be written (missing, or brokers unreachable when it was looked up)."""


class _NotDelivered(RuntimeError):
    """Records of a bundle that failed transiently (not confirmed in time, brokers down)."""


class _Delivery:
    """The outcome of one produced record, filled in by its delivery report."""

    def __init__(self) -> None:
        self.reported = False
        self.error: Any = None

    def report(self, error: KafkaError | BaseException | None, unused_record: Any = None) -> None:
        self.reported = True
        self.error = error


def _is_rejected(error: Any) -> bool:
    if isinstance(error, KafkaException):
        error = error.args[0] if error.args else None
    if isinstance(error, KafkaError):
        return error.code() in _REJECTED_CODES
    return isinstance(error, (TypeError, ValueError, msgspec.EncodeError))


@dataclass(frozen=True)
class _Target:
    """Everything the produce DoFn needs, picklable."""

    connection: KafkaConnection
    key: str | None
    attribute_fields: tuple[str, ...]
    timeout: float
    retry: RetryPolicy
    max_message_bytes: int
    pipeline: str
    counter: str
    raw: bool = False


class _ProduceFn(beam.DoFn):
    """Produces blocks of `Record`s; emits, from ``finish_bundle``, the dead letters of failures."""

    def __init__(self, target: _Target) -> None:
        self._target = target

    def setup(self) -> None:
        target = self._target
        self._producer = Producer(
            {
                **target.connection.client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.max.bytes": target.max_message_bytes,
                "message.timeout.ms": int(target.timeout * 1000),
                # The sink never creates topics, even where the broker would on a write.
                "allow.auto.create.topics": False,
            }
        )
        self._encoder = msgspec.json.Encoder(enc_hook=str)
        self._written = metrics.counter(target.counter)
        self._missing: str | None = self._missing_topic()

    def _missing_topic(self) -> str | None:
        """Returns why the topic cannot be written to, or ``None`` when it exists."""
        connection = self._target.connection
        try:
            metadata = self._producer.list_topics(connection.topic, timeout=self._target.timeout)
        except KafkaException as error:
            return f"cannot reach the brokers: {error}"
        found = metadata.topics.get(connection.topic)
        if found is not None and found.error is None:
            return None
        reason = found.error if found is not None else "not found"
        return (
            f"topic {connection.topic!r} cannot be written ({reason}); the sink does not "
            "create topics: create it"
        )

    def start_bundle(self) -> None:
        self._pending: list[Pending[_Delivery]] = []
        if self._missing is not None:
            self._missing = self._missing_topic()

    def _headers(self, record: Record) -> list[tuple[str, str | bytes | None]]:
        attributes = dict(record.origin.attributes) if record.origin is not None else {}
        for name in self._target.attribute_fields:
            value = record.data.get(name)
            if value is not None:
                attributes[name] = to_text(value)
        return [(name, value.encode("utf-8")) for name, value in attributes.items()]

    def _produce(self, record: Record, delivery: _Delivery) -> None:
        key = None
        if self._target.key is not None:
            value = record.data.get(self._target.key)
            key = None if value is None else to_text(value).encode("utf-8")
        payload = message_payload(record, self._target.raw, self._encoder.encode)
        while True:
            try:
                self._producer.produce(
                    self._target.connection.topic,
                    value=payload,
                    key=key,
                    headers=self._headers(record),
                    on_delivery=delivery.report,
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain
                self._producer.poll(1.0)

    def _send(self, pending: Pending[_Delivery]) -> None:
        """Produces one record; a record refused before sending gets its error reported."""
        if self._missing is not None:
            pending.item.report(KafkaWriteError(self._missing))
            return
        try:
            self._produce(pending.record, pending.item)
        except Exception as error:  # a record refused before sending is a failed write
            pending.item.report(error)
        self._producer.poll(0)

    def process(
        self,
        block: list[Record],
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> None:
        for record in block:
            pending = Pending(record, _Delivery(), timestamp, window)
            self._pending.append(pending)
            self._send(pending)

    def _settle(
        self, pending: list[Pending[_Delivery]], failed: list[Pending[_Delivery]], again: bool
    ) -> None:
        """Waits for the delivery reports of ``pending``; raises `_NotDelivered` after transients.

        With ``again``, the records of ``pending`` are produced again first. Afterwards
        ``pending`` holds the records that failed transiently (not confirmed in time, brokers
        unreachable); failures for good (a rejected record, a missing topic) go to ``failed``.
        """
        target = self._target
        if again:
            pending[:] = [Pending(p.record, _Delivery(), p.timestamp, p.window) for p in pending]
            for item in pending:
                self._send(item)
        deadline = time.monotonic() + target.timeout
        while any(not p.item.reported for p in pending) and time.monotonic() < deadline:
            self._producer.flush(max(0.0, min(1.0, deadline - time.monotonic())))
        if any(not p.item.reported for p in pending):
            self._producer.purge(in_queue=True, in_flight=False)
            self._producer.poll(0)  # reports the purged records
        retry = []
        for item in pending:
            error = item.item.error
            if item.item.reported and error is None:
                self._written.inc()
            elif _is_rejected(error) or isinstance(error, KafkaWriteError):
                failed.append(item)
            else:
                retry.append(item)
        pending[:] = retry
        if retry:
            raise _NotDelivered(f"{len(retry)} record(s): {self._describe(retry[0].item)}")

    def finish_bundle(self) -> Iterator[WindowedValue]:
        target = self._target
        pending, self._pending = self._pending, []
        failed: list[Pending[_Delivery]] = []
        sends = 0

        def settle() -> None:
            nonlocal sends
            sends += 1
            self._settle(pending, failed, again=sends > 1)

        where = target.connection.where
        try:
            target.retry.call(settle, lambda error: isinstance(error, _NotDelivered), where)
        except _NotDelivered:
            failed += pending
        for failure in failed:
            error = failure.item.error
            yield dead_letter(
                failure,
                pipeline=target.pipeline,
                reason=SinkRejected.reason if _is_rejected(error) else SINK_UNAVAILABLE,
                error_type=type(error).__name__ if error is not None else "Timeout",
                message=f"{where}: {self._describe(failure.item)}",
                stacktrace=(
                    "".join(traceback.format_exception(error))
                    if isinstance(error, BaseException)
                    else ""
                ),
            )

    def _describe(self, delivery: _Delivery) -> str:
        if not delivery.reported:
            return f"not confirmed within {self._target.timeout:g}s"
        return str(delivery.error)

    def teardown(self) -> None:
        producer = getattr(self, "_producer", None)
        if producer is not None:
            producer.flush(self._target.timeout)


class KafkaSink(Sink):
    """Writes blocks of `Record`s to a Kafka topic as JSON; returns dead letters of failures.

    Input elements are blocks of `Record`s. The output holds
    one dead-letter dict (see `transforms.dead_letter`) per record that was not written, step
    ``sink``, in the record's window: reason ``sink_rejected`` when the
    record itself was refused (larger than ``max_message_bytes`` or the broker's limit, not
    encodable as JSON), ``sink_unavailable`` otherwise (topic missing; brokers unreachable or not
    confirmed within ``timeout`` with ``attempts=N`` only, since by default those are produced
    again until they are delivered). Delivered records are counted in ``context.counter``.

    Args:
        endpoint: ``kafka://HOST:PORT[,HOST:PORT...]/TOPIC`` with optional ``key``,
            ``attributes``, ``timeout``, ``max_message_bytes`` and the connection parameters
            of `transforms.io.kafka.client`.
        context: the pipeline writing to the sink.

    Raises:
        EndpointError: from the constructor, for a URI that cannot work.

    """

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__(endpoint, context)
        endpoint.check_params(_PARAMS)
        connection = KafkaConnection.from_endpoint(endpoint)
        key = endpoint.params.get("key")
        if key == "":
            raise EndpointError(f"{endpoint}: key is empty; name a field or leave it out")
        names = endpoint.params.get("attributes", "")
        self._target = _Target(
            connection=connection,
            key=key,
            attribute_fields=tuple(name.strip() for name in names.split(",") if name.strip()),
            timeout=endpoint.positive("timeout", float, DEFAULT_TIMEOUT),
            retry=RetryPolicy.from_endpoint(endpoint),
            max_message_bytes=self._max_message_bytes(endpoint),
            pipeline=context.pipeline,
            counter=context.counter,
            raw=context.raw,
        )

    @staticmethod
    def _max_message_bytes(endpoint: Endpoint) -> int:
        value: int = endpoint.positive("max_message_bytes", int, DEFAULT_MAX_MESSAGE_BYTES)
        if not MIN_MESSAGE_BYTES <= value <= MAX_MESSAGE_BYTES:
            raise EndpointError(
                f"{endpoint}: max_message_bytes must be between {MIN_MESSAGE_BYTES} and "
                f"{MAX_MESSAGE_BYTES} (librdkafka's bounds)"
            )
        return value

    @property
    def topic(self) -> str:
        """The topic written to."""
        return self._target.connection.topic

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        """Produce the blocks' records; return the dead-letter dicts of failures."""
        return blocks | "Produce" >> beam.ParDo(_ProduceFn(self._target))
