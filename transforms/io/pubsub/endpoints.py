"""``pubsub://`` endpoints: Cloud Pub/Sub subscriptions in, topics out.

Source: ``pubsub://projects/P/subscriptions/S?timestamp_attribute=ts&id_attribute=id`` reads the
subscription (unbounded) on the DirectRunner and Dataflow. Each message becomes::

    Message(
        payload=b'{"user_id": "u1"}',                  # the message data, unchanged
        attributes={"source": "web"},                  # the message attributes
        origin=Origin("pubsub", message_id="17", publish_time="2026-11-25T10:00:00.250Z",
                      key="u1"),                       # key: the ordering key, if any
    )

``timestamp_attribute`` makes Beam take the element timestamp from that attribute (epoch
milliseconds or RFC 3339) instead of the publish time; ``id_attribute`` is Beam's ``id_label``:
Dataflow drops messages whose attribute repeats a value seen before. Beam 2.77's DirectRunner
refuses ``id_label`` when the pipeline runs, so the source refuses it on the DirectRunner when
the graph is built. Any field the runner leaves empty (message id, publish time, ordering key)
stays ``None`` in the origin. On the DirectRunner with the emulator all three are filled in;
``publish_time`` is kept to the millisecond.

Delivery, per runner:

- DirectRunner: the suite's own reader (`transforms.io.pubsub.read.PubSubLiveReader`, on the
  streaming BundleBasedDirectRunner) acknowledges a message only once every write that depends
  on it (outputs and dead letters) has finished, and extends the deadline of the messages it
  holds. A killed run loses nothing: at least once, a message written but not yet acknowledged
  is processed again. ``max_in_flight`` (default 1000) bounds the unacknowledged messages,
  ``ack_deadline`` (seconds, 10-600, default 60) is the lease it keeps extending.
- Dataflow: Beam's ``ReadFromPubSub``; Dataflow acknowledges a message once its first step's
  output is durably committed, so a worker that dies loses nothing either (``max_in_flight``
  and ``ack_deadline`` do not apply there).

Sink: ``pubsub://projects/P/topics/T?attributes=f1,f2&ordering_key=f&timeout=30`` publishes each
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
import re
import time
import traceback
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

import apache_beam as beam
import msgspec
from apache_beam.io.gcp.pubsub import PROJECT_ID_REGEXP, PubsubMessage
from apache_beam.metrics import Metrics
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner, SwitchingDirectRunner
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.cloud.pubsub_v1 import PublisherClient
from google.cloud.pubsub_v1.publisher import futures as publish_futures
from google.cloud.pubsub_v1.publisher.exceptions import MessageTooLargeError
from google.cloud.pubsub_v1.types import PublisherOptions

from transforms.blocks import Batch
from transforms.errors import SinkRejected
from transforms.event_time import format_timestamp
from transforms.io.base import Sink, SinkContext, Source, message_payload
from transforms.io.batching import SINK_UNAVAILABLE, Pending, dead_letter
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.live import BUNDLE_RUNNER, DirectLiveRead
from transforms.io.pubsub.read import ACK_DEADLINE_RANGE, PubSubReadSettings, live_reader
from transforms.io.retry import RetryPolicy
from transforms.message import Message, Origin, Record
from transforms.metrics import NAMESPACE

__all__ = ["DELIVERY", "PubSubSink", "PubSubSource", "to_message"]

DELIVERY = {
    "DirectRunner": "at least once: acknowledged after every write that depends on the message "
    "(outputs and dead letters); a killed run's unacknowledged messages are redelivered",
    "DataflowRunner": "at least once: Dataflow acknowledges after durably committing the read",
}
"""What the source guarantees on each runner (``describe`` prints it)."""

_RESOURCE = re.compile(
    r"projects/(?P<project>[^/]+)/(?P<kind>topics|subscriptions)/(?P<name>[^/]+)"
)
# Beam's rule for project ids (ReadFromPubSub refuses others) and Pub/Sub's for topic and
# subscription ids.
_PROJECT = re.compile(PROJECT_ID_REGEXP)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._~+%-]{2,254}")
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


def _resource(endpoint: Endpoint, kind: str) -> str:
    """Return ``projects/P/<kind>/N`` from a ``pubsub://`` URI; raise `EndpointError` if bad."""
    example = f"pubsub://projects/PROJECT/{kind}/NAME"
    if endpoint.port is not None or endpoint.username is not None:
        raise EndpointError(f"{endpoint}: no host, port or user here; use {example}")
    path = f"{endpoint.host}{endpoint.path}".rstrip("/")
    match = _RESOURCE.fullmatch(path)
    if match is None:
        raise EndpointError(f"{endpoint}: expected {example}")
    project, found, name = match["project"], match["kind"], match["name"]
    if found != kind:
        if kind == "subscriptions":
            raise EndpointError(
                f"{endpoint}: reading needs a subscription, not a topic: create one on topic "
                f"{name!r} and give pubsub://projects/{project}/subscriptions/SUBSCRIPTION"
            )
        raise EndpointError(
            f"{endpoint}: publishing needs a topic, not a subscription: give "
            f"pubsub://projects/{project}/topics/TOPIC"
        )
    if not _PROJECT.fullmatch(project):
        raise EndpointError(
            f"{endpoint}: {project!r} is not a valid project id: 6-63 lower-case letters, digits "
            "and - : . starting with a letter"
        )
    if not _NAME.fullmatch(name) or name.startswith("goog"):
        raise EndpointError(
            f"{endpoint}: {name!r} is not a valid Pub/Sub id: 3-255 characters, starting with a "
            "letter, of letters, digits and - _ . ~ + %, not starting with 'goog'"
        )
    return path


def _optional(endpoint: Endpoint, name: str) -> str | None:
    value = endpoint.params.get(name)
    if value == "":
        raise EndpointError(f"{endpoint}: parameter {name} is empty; give a name or leave it out")
    return value


def to_message(msg: PubsubMessage) -> Message:
    """Turn one Beam `PubsubMessage` into the suite's `Message`.

    Args:
        msg: a message as ``ReadFromPubSub(with_attributes=True)`` emits it.

    Returns:
        ``Message(payload=msg.data, attributes=dict(msg.attributes), origin=Origin("pubsub",
        message_id=..., publish_time="2026-11-25T10:00:00.250Z", key=<ordering key>))``, with
        ``None`` for whatever the runner did not fill in.

    """
    published = msg.publish_time
    return Message(
        payload=msg.data or b"",
        attributes=dict(msg.attributes or {}),
        origin=Origin(
            "pubsub",
            message_id=msg.message_id or None,
            publish_time=format_timestamp(published.timestamp()) if published else None,
            key=msg.ordering_key or None,
        ),
    )


class PubSubSource(Source):
    """Reads `Message`s from a Pub/Sub subscription; unbounded, DirectRunner and Dataflow only.

    Args:
        endpoint: ``pubsub://projects/P/subscriptions/S`` with optional ``timestamp_attribute``,
            ``id_attribute``, ``max_in_flight`` and ``ack_deadline`` parameters.

    """

    bounded = False
    finite = False
    live_on_direct = True
    delivery: ClassVar[dict[str, str]] = DELIVERY

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        endpoint.check_params(
            frozenset({"timestamp_attribute", "id_attribute", "max_in_flight", "ack_deadline"})
        )
        self.subscription = _resource(endpoint, "subscriptions")
        self.timestamp_attribute = _optional(endpoint, "timestamp_attribute")
        self.id_attribute = _optional(endpoint, "id_attribute")
        low, high = ACK_DEADLINE_RANGE
        ack_deadline: int = endpoint.positive("ack_deadline", int, 60)
        if not low <= ack_deadline <= high:
            raise EndpointError(
                f"{endpoint}: ack_deadline must be {low}-{high} seconds (Pub/Sub's range), "
                f"got {ack_deadline}"
            )
        self.settings = PubSubReadSettings(
            subscription=self.subscription,
            timestamp_attribute=self.timestamp_attribute,
            max_in_flight=endpoint.positive("max_in_flight", int, 1000),
            ack_deadline=ack_deadline,
        )

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        """Read the subscription; elements are `Block`s of `Message`s (see `_read`)."""
        return self._read(pbegin) | "Blocks" >> Batch()

    def _read(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        """Read the subscription; elements are `Message`s stamped with publish or event time."""
        if self.id_attribute is not None and isinstance(
            pbegin.pipeline.runner, (SwitchingDirectRunner, BundleBasedDirectRunner)
        ):
            raise EndpointError(
                f"{self.endpoint}: the DirectRunner cannot deduplicate on id_attribute (Beam "
                "refuses id_label there): run on DataflowRunner, or drop id_attribute and "
                "deduplicate downstream"
            )
        if type(pbegin.pipeline.runner).__name__ == BUNDLE_RUNNER:
            return (
                pbegin
                | "Live" >> DirectLiveRead(live_reader(self.settings))
                | "Messages" >> beam.Map(to_message)
            )
        return (
            pbegin
            | "Read"
            >> beam.io.ReadFromPubSub(
                subscription=self.subscription,
                with_attributes=True,
                id_label=self.id_attribute,
                timestamp_attribute=self.timestamp_attribute,
            )
            | "Messages" >> beam.Map(to_message)
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
        self._written = Metrics.counter(NAMESPACE, self._context.counter)

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
        self.topic = _resource(endpoint, "topics")
        names = endpoint.params.get("attributes", "")
        self.attribute_fields = tuple(name.strip() for name in names.split(",") if name.strip())
        self.ordering_key = _optional(endpoint, "ordering_key")
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
