"""Publishing records to a Pub/Sub topic.

URI: ``pubsub://projects/P/topics/T?attributes=f1,f2&ordering_key=f&timeout=30`` publishes each
record's data as JSON (bytes as base64), with the attributes of the message the record came from
plus the record fields named in ``attributes`` (strings as they are, other values as JSON text;
missing or null fields are left out). ``ordering_key`` names the field whose value becomes the
message's ordering key. ``timeout`` bounds, in seconds, how long a bundle waits for its
publishes, the client's own retries included; the messages of a publish that failed
transiently (service down, throttled) or did not finish by then are published again with
backoff (`transforms.io.retry`): until they are published by default (``attempts=forever``, so a
replay can duplicate a message that arrived late), or up to N times with ``attempts=N``, after
which they are dead-lettered as ``sink_unavailable``. A message the service refuses is
dead-lettered as ``sink_rejected`` at once.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Iterator
from typing import Any, NamedTuple

import apache_beam as beam
import msgspec
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.cloud.pubsub_v1 import PublisherClient
from google.cloud.pubsub_v1.publisher import futures as publish_futures
from google.cloud.pubsub_v1.publisher.exceptions import MessageTooLargeError
from google.cloud.pubsub_v1.types import PublisherOptions

from transforms import metrics
from transforms.errors import SinkRejected
from transforms.io.base import Sink, SinkContext, message_payload
from transforms.io.batching import SINK_UNAVAILABLE, Pending, dead_letter
from transforms.io.endpoint import Endpoint
from transforms.io.pubsub.resources import optional_param, resource_path
from transforms.io.retry import RetryPolicy
from transforms.message import Record

__all__ = ["PubSubSink"]

_TRANSIENT = (
    api_exceptions.Aborted,
    api_exceptions.Cancelled,
    api_exceptions.DeadlineExceeded,
    api_exceptions.InternalServerError,
    api_exceptions.ResourceExhausted,
    api_exceptions.ServiceUnavailable,
    api_exceptions.Unknown,
)
# Failures caused by the message itself rather than by the topic or the service.
# ValueError: text that is not UTF-8 (UnicodeEncodeError), a value msgspec cannot encode.
_REJECTED = (
    api_exceptions.InvalidArgument,
    MessageTooLargeError,
    TypeError,
    ValueError,
    msgspec.EncodeError,
)


class _NotPublished(RuntimeError):
    """Messages of a bundle whose publish failed transiently (service down, timeout)."""


class _Pending(NamedTuple):
    record: Record
    window: BoundedWindow
    timestamp: Timestamp
    ordering_key: str
    future: Any


def _attribute_text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value, enc_hook=str).decode()


class _PublishFn(beam.DoFn):
    """Publishes blocks of records; emits, from ``finish_bundle``, dead letters of failures."""

    def __init__(
        self,
        topic: str,
        attribute_fields: tuple[str, ...],
        ordering_field: str | None,
        timeout: float,
        retry: RetryPolicy,
        context: SinkContext,
    ) -> None:
        self._retry = retry
        self._topic = topic
        self._attribute_fields = attribute_fields
        self._ordering_field = ordering_field
        self._timeout = timeout
        self._context = context

    def setup(self) -> None:
        retry = api_retry.Retry(
            predicate=api_retry.if_exception_type(*_TRANSIENT),
            initial=0.1,
            maximum=min(60.0, self._timeout),
            multiplier=4.0,
            timeout=self._timeout,
        )
        options = PublisherOptions(
            enable_message_ordering=self._ordering_field is not None,
            retry=retry,
            timeout=self._timeout,
        )
        self._publisher = PublisherClient(publisher_options=options)
        self._encoder = msgspec.json.Encoder(enc_hook=str)
        self._written = metrics.counter(self._context.counter)

    def start_bundle(self) -> None:
        self._pending: list[_Pending] = []

    def _attributes(self, record: Record) -> dict[str, str]:
        attributes = dict(record.origin.attributes) if record.origin is not None else {}
        for name in self._attribute_fields:
            value = record.data.get(name)
            if value is not None:
                attributes[name] = _attribute_text(value)
        return attributes

    def _publish(self, record: Record, key: str) -> Any:
        """Publishes one record; returns its future (holding the error of a refused message)."""
        try:
            return self._publisher.publish(
                self._topic,
                message_payload(record, self._context.raw, self._encoder.encode),
                ordering_key=key,
                **self._attributes(record),
            )
        except Exception as exc:  # a message refused by the client is a failed publish
            future = publish_futures.Future()
            future.set_exception(exc)
            return future

    def process(
        self,
        block: list[Record],
        window: Any = beam.DoFn.WindowParam,
        timestamp: Any = beam.DoFn.TimestampParam,
    ) -> None:
        for record in block:
            key = ""
            if self._ordering_field is not None:
                value = record.data.get(self._ordering_field)
                key = "" if value is None else _attribute_text(value)
            publish = self._publish(record, key)
            self._pending.append(_Pending(record, window, timestamp, key, publish))

    def _settle(
        self, pending: list[_Pending], failed: list[tuple[_Pending, BaseException]], again: bool
    ) -> None:
        """Waits for the publishes of ``pending``; raises `_NotPublished` after transient failures.

        With ``again``, the messages of ``pending`` are published again first. Afterwards
        ``pending`` holds the messages that failed transiently; failures for good go to
        ``failed``. The key of each failed message is resumed.
        """
        if again:
            pending[:] = [
                item._replace(future=self._publish(item.record, item.ordering_key))
                for item in pending
            ]
        deadline = time.monotonic() + self._timeout
        retry: list[_Pending] = []
        last: BaseException | None = None
        for item in pending:
            try:
                item.future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as error:
                if isinstance(error, (*_TRANSIENT, api_exceptions.RetryError, TimeoutError)):
                    retry.append(item)
                    last = error
                else:
                    failed.append((item, error))
            else:
                self._written.inc()
        for key in {item.ordering_key for item in retry if item.ordering_key} | {
            item.ordering_key for item, _ in failed if item.ordering_key
        }:
            # A failed send pauses its key; a message refused before sending (too large) does
            # not, and resuming a key that is not paused raises RuntimeError.
            with contextlib.suppress(RuntimeError):
                self._publisher.resume_publish(self._topic, key)
        pending[:] = retry
        if last is not None:
            raise _NotPublished(
                f"{len(retry)} message(s) not published: {type(last).__name__}: {last}"
            )

    def finish_bundle(self) -> Iterator[WindowedValue]:
        pending, self._pending = self._pending, []
        failed: list[tuple[_Pending, BaseException]] = []
        sends = 0

        def settle() -> None:
            nonlocal sends
            sends += 1
            self._settle(pending, failed, again=sends > 1)

        try:
            self._retry.call(settle, lambda error: isinstance(error, _NotPublished), self._topic)
        except _NotPublished as error:
            failed += [(item, error) for item in pending]
        for item, exc in failed:
            yield dead_letter(
                Pending(item.record, None, item.timestamp, item.window),
                pipeline=self._context.pipeline,
                reason=SinkRejected.reason if isinstance(exc, _REJECTED) else SINK_UNAVAILABLE,
                error_type=type(exc).__name__,
                message=f"publish to {self._topic} failed: {exc}",
                stacktrace="".join(traceback.format_exception(exc)),
            )

    def teardown(self) -> None:
        self._publisher.stop()


class PubSubSink(Sink):
    """Publishes blocks of `Record`s to a Pub/Sub topic as JSON; returns dead letters of failures.

    Input elements are blocks of `Record`s. The output holds one dead-letter dict (see
    `transforms.dead_letter`) per record that could not be published, with step ``sink`` and
    reason ``sink_rejected`` (the message itself was refused: invalid or too large) or
    ``sink_unavailable`` (topic missing, permission denied; service down or timeout with
    ``attempts=N`` only: by default those are published again until they are published), in
    the record's window.

    Args:
        endpoint: ``pubsub://projects/P/topics/T`` with optional ``attributes``,
            ``ordering_key`` and ``timeout`` parameters.
        context: the pipeline writing to the sink.

    """

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__(endpoint, context)
        endpoint.check_params(frozenset({"attributes", "ordering_key", "timeout", "attempts"}))
        self.topic = resource_path(endpoint, "topics")
        names = endpoint.params.get("attributes", "")
        self.attribute_fields = tuple(name.strip() for name in names.split(",") if name.strip())
        self.ordering_key = optional_param(endpoint, "ordering_key")
        self.timeout: float = endpoint.positive("timeout", float, 30.0)
        self.retry = RetryPolicy.from_endpoint(endpoint)

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        """Publish the blocks' records; return the dead-letter dicts of failures."""
        return blocks | "Publish" >> beam.ParDo(
            _PublishFn(
                self.topic,
                self.attribute_fields,
                self.ordering_key,
                self.timeout,
                self.retry,
                self.context,
            )
        )
