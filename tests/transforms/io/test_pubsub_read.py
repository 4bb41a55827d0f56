"""Tests of transforms.io.pubsub.read against the Pub/Sub emulator.

The reader acknowledges a message only once every step after the read has finished with it, and
keeps the messages it holds leased while a slow pipeline works. No timing is asserted: waits
have generous deadlines; the slow step is slower than two ack deadlines on purpose.
"""

from __future__ import annotations

import calendar
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

from tests.polling import wait_for
from transforms.blocks import Batch
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.live import DirectLiveRead
from transforms.io.pubsub.endpoints import PubSubSource, to_message
from transforms.io.pubsub.read import PubSubLiveReader, PubSubReadSettings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_direct_runner")]

DEADLINE_S = 120.0

# Module level: the DirectRunner runs DoFns in this process, on its own threads.
_READERS: dict[str, PubSubLiveReader] = {}
_SEEN: dict[str, list[tuple[str, bool]]] = defaultdict(list)


class _Registered:
    """A reader factory that keeps the reader where the test can look at it."""

    def __init__(self, tag: str, settings: PubSubReadSettings) -> None:
        self._tag = tag
        self._settings = settings

    def __call__(self) -> PubSubLiveReader:
        reader = PubSubLiveReader(self._settings)
        _READERS[self._tag] = reader
        return reader


class _Write(beam.DoFn):
    """Stands for a sink of blocks: records (message id, whether it is unacknowledged)."""

    def __init__(self, tag: str, first_delay: float) -> None:
        self._tag = tag
        self._first_delay = first_delay

    def process(self, block: list[Any]) -> None:
        if not _SEEN[self._tag]:
            time.sleep(self._first_delay)  # a slow first write, longer than the ack deadline
        for message in block:
            message_id = message.origin.message_id
            _SEEN[self._tag].append((message_id, message_id in _READERS[self._tag].in_flight))


@pytest.fixture
def publish(pubsub_topic: tuple[str, str]) -> Iterator[Callable[[int], list[str]]]:
    publisher = PublisherClient()

    def send(count: int) -> list[str]:
        futures = [
            publisher.publish(pubsub_topic[0], f'{{"n": {i}}}'.encode()) for i in range(count)
        ]
        return [future.result() for future in futures]

    yield send


def run_reading(
    tag: str, settings: PubSubReadSettings, first_delay: float, until: Callable[[], bool]
) -> None:
    """Reads the subscription in blocks, as `PubSubSource` does, through `_Write` on the
    streaming DirectRunner until ``until()``."""
    options = PipelineOptions(streaming=True)
    pipeline = beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)
    _ = (
        pipeline
        | DirectLiveRead(_Registered(tag, settings))
        | beam.Map(to_message)
        | Batch()
        | beam.ParDo(_Write(tag, first_delay))
    )
    result = pipeline.run()
    try:
        wait_for(until, "the messages to be written and acknowledged")
    finally:
        result.cancel()
        _READERS[tag].close()


def redelivered(subscription: str) -> list[str]:
    """Message ids Pub/Sub delivers again now (a short pull; nothing acknowledged)."""
    subscriber = SubscriberClient()
    try:
        response = subscriber.pull(
            subscription=subscription, max_messages=100, return_immediately=True, timeout=10
        )
        return [m.message.message_id for m in response.received_messages]
    finally:
        subscriber.close()


def test_messages_are_acknowledged_only_after_their_writes(
    pubsub_topic: tuple[str, str], publish: Callable[[int], list[str]], unique_name: str
) -> None:
    settings = PubSubReadSettings(pubsub_topic[1], None, max_in_flight=1000, ack_deadline=10)
    ids = publish(6)

    def written_and_acknowledged() -> bool:
        reader = _READERS.get(unique_name)
        return len(_SEEN[unique_name]) >= len(ids) and reader is not None and not reader.in_flight

    run_reading(unique_name, settings, 0.5, written_and_acknowledged)

    seen = _SEEN.pop(unique_name)
    assert sorted(message_id for message_id, _ in seen) == sorted(ids)
    # Each message was still unacknowledged while its write ran...
    assert all(unacknowledged for _, unacknowledged in seen)
    # ...and acknowledged after: once its lease would have run out, nothing comes again.
    time.sleep(settings.ack_deadline + 2)
    assert redelivered(pubsub_topic[1]) == []


def test_leases_are_extended_while_a_slow_write_runs(
    pubsub_topic: tuple[str, str], publish: Callable[[int], list[str]], unique_name: str
) -> None:
    """The first write takes 2.5 ack deadlines: without lease extension all would come again."""
    settings = PubSubReadSettings(pubsub_topic[1], None, max_in_flight=1000, ack_deadline=10)
    ids = publish(4)

    def acknowledged() -> bool:
        reader = _READERS.get(unique_name)
        return len(_SEEN[unique_name]) >= len(ids) and reader is not None and not reader.in_flight

    run_reading(unique_name, settings, 2.5 * settings.ack_deadline, acknowledged)

    seen = [message_id for message_id, _ in _SEEN.pop(unique_name)]
    assert sorted(seen) == sorted(ids)  # each exactly once: no redelivery


def test_unacknowledged_messages_are_redelivered_after_a_stop(
    pubsub_topic: tuple[str, str], publish: Callable[[int], list[str]]
) -> None:
    """What a killed run leaves: pulled, never settled, so Pub/Sub delivers them again."""
    settings = PubSubReadSettings(pubsub_topic[1], None, max_in_flight=3, ack_deadline=10)
    ids = publish(5)
    reader = PubSubLiveReader(settings)
    pulled: list[str] = []
    wait_for(
        lambda: (
            not pulled.extend(e.value.message_id for e in reader.read(100)) and len(pulled) >= 3
        ),
        "three messages pulled",
    )
    assert len(pulled) == 3 and reader.in_flight == set(pulled)  # max_in_flight holds the rest
    assert reader.read(100) == []
    reader.close()

    again: list[str] = []
    wait_for(
        lambda: not again.extend(redelivered(pubsub_topic[1])) and set(pulled) <= set(again),
        "the unacknowledged messages to come again",
    )
    assert set(again) <= set(ids)


def test_timestamps_come_from_the_attribute_or_the_publish_time(
    pubsub_topic: tuple[str, str],
) -> None:
    publisher = PublisherClient()
    topic = pubsub_topic[0]
    millis = str(calendar.timegm((2026, 11, 25, 10, 0, 0)) * 1000 + 250)
    for attributes in ({"ts": millis}, {"ts": "2026-11-25T10:00:00Z"}, {"ts": "x"}, {}):
        publisher.publish(topic, b"{}", **attributes).result()
    settings = PubSubReadSettings(pubsub_topic[1], "ts", max_in_flight=10, ack_deadline=10)
    reader = PubSubLiveReader(settings)
    elements: list[Any] = []
    wait_for(lambda: not elements.extend(reader.read(10)) and len(elements) >= 4, "4 messages")
    reader.settled()
    reader.close()
    by_ts = {e.value.attributes.get("ts"): e for e in elements}
    assert float(by_ts[millis].timestamp) == int(millis) / 1000
    assert float(by_ts["2026-11-25T10:00:00Z"].timestamp) == int(millis) // 1000
    for key in ("x", None):  # a bad or missing attribute: the publish time
        element = by_ts[key]
        assert float(element.timestamp) == element.value.publish_time.timestamp()
    assert reader.in_flight == set()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ack_deadline=5", "ack_deadline must be 10-600"),
        ("ack_deadline=601", "ack_deadline must be 10-600"),
        ("max_in_flight=0", "max_in_flight must be positive"),
        ("lease=30", "lease"),
    ],
)
def test_bad_read_options_are_refused(query: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message):
        PubSubSource(Endpoint.parse(f"pubsub://projects/local-project/subscriptions/sub?{query}"))


def test_read_options_reach_the_reader() -> None:
    uri = "pubsub://projects/local-project/subscriptions/sub?max_in_flight=50&ack_deadline=120"
    settings = PubSubSource(Endpoint.parse(uri)).settings
    assert (settings.max_in_flight, settings.ack_deadline) == (50, 120)
    assert settings.subscription == "projects/local-project/subscriptions/sub"


def test_the_lease_thread_ends_when_the_reader_is_closed() -> None:
    settings = PubSubReadSettings("projects/p/subscriptions/s", None, 10, 10)
    reader = PubSubLiveReader(settings)
    reader._start()
    lease = reader._lease
    assert lease is not None
    reader.close()
    lease.join(timeout=DEADLINE_S)
    assert not lease.is_alive()
