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

On the DirectRunner the source checks, when it is added to the graph (before anything runs),
that the subscription exists: one ``GetSubscription`` call of a few seconds at most; a missing
one is an `EndpointError` saying how to create it (`PubSubSource.check`).

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

Sink: see `transforms.io.pubsub.write`.
"""

from __future__ import annotations

from typing import ClassVar

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner, SwitchingDirectRunner

from transforms.blocks import Batch
from transforms.event_time import format_timestamp
from transforms.io.base import Source
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.live import BUNDLE_RUNNER, DirectLiveRead
from transforms.io.pubsub.read import (
    ACK_DEADLINE_RANGE,
    PubSubReadSettings,
    check_subscription,
    live_reader,
)
from transforms.io.pubsub.resources import optional_param, resource_path
from transforms.message import Message, Origin

__all__ = ["DELIVERY", "PubSubSource", "to_message"]

DELIVERY = {
    "DirectRunner": "at least once: acknowledged after every write that depends on the message "
    "(outputs and dead letters); a killed run's unacknowledged messages are redelivered",
    "DataflowRunner": "at least once: Dataflow acknowledges after durably committing the read",
}
"""What the source guarantees on each runner (``describe`` prints it)."""


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

    Raises:
        EndpointError: from the constructor, for a URI that cannot work; when applied to a
            DirectRunner pipeline, ``id_attribute``, or a subscription that does not exist
            (`check_readable`).

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
        self.subscription = resource_path(endpoint, "subscriptions")
        self.timestamp_attribute = optional_param(endpoint, "timestamp_attribute")
        self.id_attribute = optional_param(endpoint, "id_attribute")
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

    def check(self) -> None:
        """Checks that the subscription exists (`Source.check_readable`).

        `transforms.io.pubsub.read.check_subscription` makes one call, for a few seconds at
        most, so that a missing subscription fails before anything runs.

        Raises:
            EndpointError: the subscription does not exist, or Pub/Sub did not answer.
        """
        check_subscription(self.subscription, str(self.endpoint))

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
        self.check_readable(pbegin.pipeline.runner)
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
