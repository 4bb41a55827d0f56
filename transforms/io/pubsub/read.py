"""Reading a Pub/Sub subscription on the DirectRunner, acknowledging only what was written.

Beam's DirectRunner reads Pub/Sub by pulling messages and acknowledging them at once, before
they are processed: a run that dies loses what it had pulled. `PubSubLiveReader` is a
`transforms.io.live.LiveReader` instead: `transforms.io.live.DirectLiveRead` drives it on the
streaming DirectRunner (BundleBasedDirectRunner), and it

- pulls (synchronous pull) at most ``max_in_flight`` unacknowledged messages at a time;
- acknowledges messages only when the runner has settled: no work is pending in any step
  downstream of the read (outputs, dead letters, buffered windows), so every write that depends
  on them has finished (`settled`, called by the live driver);
- keeps the messages it holds leased: a background thread extends their ack deadline to
  ``ack_deadline`` seconds every third of it, so a slow pipeline does not get them redelivered.

A run that dies leaves its unacknowledged messages to be redelivered: delivery is at least once,
and a message processed but not yet acknowledged when the run died is processed again.

Element timestamps are the ``timestamp_attribute`` (epoch milliseconds or RFC 3339) when given
and valid, else the publish time. The watermark is the wall clock at the latest read, as for
Beam's own DirectRunner read: a message delivered late (a redelivery) may be late for windows.
A windowed pipeline settles once its open windows have fired, so its messages stay in flight
(and count against ``max_in_flight``) until then.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.transforms.window import TimestampedValue
from google.api_core import exceptions as api_exceptions
from google.auth.exceptions import GoogleAuthError
from google.cloud.pubsub_v1 import SubscriberClient
from google.cloud.pubsub_v1.types import ReceivedMessage

from transforms.errors import RecordError
from transforms.event_time import parse_timestamp
from transforms.io.endpoint import EndpointError, redact

__all__ = [
    "ACK_DEADLINE_RANGE",
    "CHECK_SECONDS",
    "PULL_SECONDS",
    "PubSubLiveReader",
    "PubSubReadSettings",
    "check_subscription",
    "live_reader",
]

log = logging.getLogger(__name__)

ACK_DEADLINE_RANGE = (10, 600)
"""The ack deadlines Pub/Sub accepts, in seconds."""
PULL_SECONDS = 1.0
"""How long one pull waits for messages when none are available."""
CHECK_SECONDS = 5.0
"""How long `check_subscription` waits for Pub/Sub (one call, not retried)."""
EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"
_IDS_PER_REQUEST = 1_000  # under Pub/Sub's 2,500 ack ids and 512 KB per request
_FULL_WAIT_SECONDS = 0.1  # a read at max_in_flight waits this long before returning nothing


@dataclass(frozen=True)
class PubSubReadSettings:
    """How to read a subscription on the DirectRunner.

    Attributes:
        subscription: ``projects/P/subscriptions/S``.
        timestamp_attribute: the attribute holding the event time, or ``None`` (publish time).
        max_in_flight: how many pulled messages may be unacknowledged at once.
        ack_deadline: the lease, in seconds, the reader keeps on unacknowledged messages.
    """

    subscription: str
    timestamp_attribute: str | None
    max_in_flight: int
    ack_deadline: int


def _timestamp(message: PubsubMessage, attribute: str | None) -> float:
    if attribute is not None:
        try:
            return parse_timestamp((message.attributes or {}).get(attribute), "ms")
        except RecordError:
            pass  # a missing or bad attribute: the publish time, as when none is named
    published = message.publish_time
    return published.timestamp() if published else time.time()


def check_subscription(subscription: str, where: str) -> None:
    """Checks, with one ``GetSubscription`` call, that the subscription exists.

    Called where the graph is built, before anything runs
    (`transforms.io.pubsub.endpoints.PubSubSource`). What the check cannot decide passes, for
    the read to report: no credentials (the command line then names the fix), or credentials
    that may pull but not view the subscription (``roles/pubsub.subscriber`` alone).

    Args:
        subscription: ``projects/P/subscriptions/S``.
        where: the endpoint URI, for messages.

    Raises:
        EndpointError: the subscription does not exist, or Pub/Sub (the emulator, when
            ``PUBSUB_EMULATOR_HOST`` is set) did not answer within `CHECK_SECONDS`.
    """
    emulator = os.environ.get(EMULATOR_ENV)
    on = f" (on the emulator at {EMULATOR_ENV}={emulator})" if emulator else ""
    try:
        client = SubscriberClient()
    except GoogleAuthError:
        return
    try:
        client.get_subscription(subscription=subscription, timeout=CHECK_SECONDS, retry=None)
    except (GoogleAuthError, api_exceptions.PermissionDenied, api_exceptions.Unauthenticated):
        return
    except api_exceptions.NotFound:
        _, project, _, name = subscription.split("/")
        raise EndpointError(
            f"{where}: no subscription {subscription}{on}: create it, e.g. gcloud pubsub "
            f"subscriptions create {name} --topic=TOPIC --project={project}"
        ) from None
    except api_exceptions.GoogleAPICallError as error:
        hint = (
            f"is the emulator up? (python -m pipelines.devtools services up pubsub, or unset "
            f"{EMULATOR_ENV})"
            if emulator
            else "check the network and the project"
        )
        raise EndpointError(
            f"{where}: could not ask Pub/Sub about {subscription}{on} "
            f"({type(error).__name__}: {redact(_first_line(error))}; waited at most "
            f"{CHECK_SECONDS:g}s): {hint}"
        ) from None
    finally:
        client.close()


def _first_line(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error)
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[i : i + _IDS_PER_REQUEST]) for i in range(0, len(ids), _IDS_PER_REQUEST)]


class PubSubLiveReader:
    """A `transforms.io.live.LiveReader` of a subscription that acknowledges once settled.

    Elements are ``TimestampedValue(PubsubMessage(...), seconds)`` (``to_message`` of
    `transforms.io.pubsub.endpoints` turns them into `Message`s). Not thread-safe for ``read`` and
    ``settled`` (the live driver calls them from one read at a time); the lease thread shares
    only the in-flight table, under a lock.

    Args:
        settings: the subscription and the limits.
        client: a subscriber client (made at the first read when not given).
    """

    def __init__(
        self, settings: PubSubReadSettings, client: SubscriberClient | None = None
    ) -> None:
        self._settings = settings
        self._client = client
        self._in_flight: dict[str, str] = {}  # ack id -> message id
        self._lock = threading.Lock()
        self._watermark = 0.0
        self._last_read = time.monotonic()
        self._closed = threading.Event()
        self._lease: threading.Thread | None = None

    def read(self, limit: int) -> list[TimestampedValue]:
        """Pulls up to ``limit`` messages (fewer when ``max_in_flight`` are unacknowledged)."""
        self._last_read = time.monotonic()
        if self._lease is None or not (self._lease.is_alive() or self._closed.is_set()):
            self._start()  # first read, or the run was held up longer than the lease thread waits
        with self._lock:
            room = min(limit, self._settings.max_in_flight - len(self._in_flight))
        # The wall clock, even when full: the windows holding the messages in flight must close.
        self._watermark = max(self._watermark, time.time())
        if room <= 0:
            time.sleep(_FULL_WAIT_SECONDS)
            return []
        try:
            response = self._subscriber().pull(
                subscription=self._settings.subscription,
                max_messages=room,
                timeout=PULL_SECONDS,
                retry=None,
            )
        except (api_exceptions.DeadlineExceeded, api_exceptions.ServiceUnavailable):
            received: Sequence[ReceivedMessage] = []
        else:
            received = response.received_messages
        if not received:
            return []
        ids = [message.ack_id for message in received]
        with self._lock:
            self._in_flight.update((m.ack_id, m.message.message_id) for m in received)
        self._extend(ids)
        elements = []
        for message in received:
            beam_message = PubsubMessage._from_message(message.message)
            timestamp = _timestamp(beam_message, self._settings.timestamp_attribute)
            elements.append(TimestampedValue(beam_message, timestamp))
        return elements

    def settled(self) -> None:
        """Acknowledges every message handed over so far: the runner has written them all."""
        with self._lock:
            ids = list(self._in_flight)
        if not ids:
            return
        for chunk in _chunks(ids):
            try:
                self._subscriber().acknowledge(
                    subscription=self._settings.subscription, ack_ids=chunk
                )
            except api_exceptions.GoogleAPICallError as error:
                # Not acknowledged: Pub/Sub redelivers them (at least once, never lost).
                log.warning("acknowledging %d Pub/Sub messages failed: %s", len(chunk), error)
        with self._lock:
            for ack_id in ids:
                self._in_flight.pop(ack_id, None)

    @property
    def in_flight(self) -> set[str]:
        """The message ids of the pulled messages not acknowledged yet."""
        with self._lock:
            return set(self._in_flight.values())

    @property
    def watermark(self) -> float:
        """The wall clock at the latest read (epoch seconds)."""
        return self._watermark

    @property
    def done(self) -> bool:
        """Never: a subscription has no end."""
        return False

    def close(self) -> None:
        """Stops extending leases (unacknowledged messages are redelivered after their deadline)."""
        self._closed.set()

    def _subscriber(self) -> SubscriberClient:
        if self._client is None:
            self._client = SubscriberClient()
        return self._client

    def _start(self) -> None:
        self._lease = threading.Thread(
            target=_keep_leases, args=(weakref.ref(self),), name="pubsub-lease", daemon=True
        )
        self._lease.start()

    def _extend(self, ids: Sequence[str]) -> None:
        for chunk in _chunks(ids):
            try:
                self._subscriber().modify_ack_deadline(
                    subscription=self._settings.subscription,
                    ack_ids=chunk,
                    ack_deadline_seconds=self._settings.ack_deadline,
                )
            except api_exceptions.GoogleAPICallError as error:
                log.warning("extending %d Pub/Sub leases failed: %s", len(chunk), error)

    def _renew(self) -> bool:
        """Extends every lease; returns whether the reader is still in use."""
        idle = time.monotonic() - self._last_read
        if self._closed.is_set() or idle > 2 * self._settings.ack_deadline:
            return False  # the run stopped calling: let Pub/Sub redeliver what it held
        with self._lock:
            ids = list(self._in_flight)
        self._extend(ids)
        return True


def _keep_leases(ref: weakref.ref[PubSubLiveReader]) -> None:
    """The lease thread: every third of the ack deadline, extends the leases of ``ref()``."""
    reader = ref()
    if reader is None:
        return
    interval = reader._settings.ack_deadline / 3.0
    closed = reader._closed
    del reader
    while not closed.wait(interval):
        reader = ref()
        if reader is None or not reader._renew():
            return
        del reader


def live_reader(settings: PubSubReadSettings) -> Callable[[], PubSubLiveReader]:
    """Returns a picklable factory of the reader (made on the runner at the first read)."""
    return functools.partial(PubSubLiveReader, settings)
