"""PubSubSource and PubSubSink against the real Pub/Sub emulator."""

from __future__ import annotations

import base64
import json
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult
from apache_beam.utils.timestamp import Timestamp
from google.api_core.exceptions import DeadlineExceeded
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
from google.cloud.pubsub_v1.types import PublisherOptions

from pipelines.devtools.services.specs import ServiceSpec
from tests.support import write_dead_letters
from transforms.blocks import Batch
from transforms.dead_letter_writer import DeadLetterWriteError, dead_letter_sink
from transforms.io.base import SinkContext
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.pubsub.endpoints import PubSubSource
from transforms.io.pubsub.write import PubSubSink
from transforms.message import Message, Origin, Record
from transforms.metrics import counter_totals

pytestmark = pytest.mark.usefixtures("live_direct_runner")

PROJECT = "test-project"
DEADLINE_SECONDS = 90.0


class Names:
    def __init__(self, base: str) -> None:
        self.topic = f"projects/{PROJECT}/topics/{base}"
        self.subscription = f"projects/{PROJECT}/subscriptions/{base}-sub"


@pytest.fixture
def names(pubsub_emulator: ServiceSpec, unique_name: str) -> Iterator[Names]:
    """A fresh topic with one subscription on it, deleted after the test."""
    created = Names(unique_name)
    publisher = PublisherClient()
    subscriber = SubscriberClient()
    publisher.create_topic(name=created.topic)
    subscriber.create_subscription(name=created.subscription, topic=created.topic)
    yield created
    subscriber.delete_subscription(subscription=created.subscription)
    publisher.delete_topic(topic=created.topic)
    subscriber.close()


def _pull(subscription: str, count: int) -> list[Any]:
    """Pulls and acks until ``count`` messages arrived or the deadline passed."""
    subscriber = SubscriberClient()
    received: list[Any] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while len(received) < count and time.monotonic() < deadline:
            try:
                response = subscriber.pull(subscription=subscription, max_messages=count, timeout=5)
            except DeadlineExceeded:  # the emulator holds a pull on an empty subscription
                continue
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=subscription,
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
                received.extend(m.message for m in response.received_messages)
    finally:
        subscriber.close()
    return received


class _RecordTo(beam.DoFn):
    """Appends each Message of a block, with the block's timestamp, to a JSON Lines file."""

    def __init__(self, path: str) -> None:
        self._path = path

    def process(self, block: list[Message], timestamp: Any = beam.DoFn.TimestampParam) -> None:
        lines = [
            {
                "payload": message.payload.decode(),
                "attributes": message.attributes,
                "origin": message.origin.to_dict(),
                "timestamp": float(timestamp),
            }
            for message in block
            if "wake" not in message.attributes
        ]
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in lines)


def _seen(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _cancel(result: PipelineResult, topic: str) -> None:
    """Cancels a streaming DirectRunner pipeline without waiting out its pending pull.

    The runner's Pub/Sub read blocks in a 30 s pull on an empty subscription and ``cancel``
    waits for it, so wake-up messages (attribute ``wake``) are published until it returns.
    """
    cancelling = threading.Thread(target=result.cancel)
    cancelling.start()
    publisher = PublisherClient()
    while cancelling.is_alive():
        publisher.publish(topic, b"", wake="1").result()
        cancelling.join(timeout=0.5)


def _run_source(uri: str, out: Path, topic: str, count: int) -> list[dict[str, Any]]:
    """Runs PubSubSource live until ``count`` messages were recorded; returns them."""
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
    _ = pipeline | PubSubSource(Endpoint.parse(uri)) | beam.ParDo(_RecordTo(str(out)))
    result = pipeline.run()
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(_seen(out)) < count and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        _cancel(result, topic)
    return _seen(out)


@pytest.mark.integration
def test_source_keeps_payloads_attributes_and_ids(names: Names, tmp_path: Path) -> None:
    publisher = PublisherClient(publisher_options=PublisherOptions(enable_message_ordering=True))
    published: dict[str, str] = {}
    for i in range(5):
        future = publisher.publish(
            names.topic,
            json.dumps({"n": i}).encode(),
            ordering_key=f"k{i}" if i % 2 else "",
            source="test",
            n=str(i),
        )
        published[future.result()] = f'{{"n": {i}}}'

    seen = _run_source(f"pubsub://{names.subscription}", tmp_path / "seen.jsonl", names.topic, 5)

    assert len(seen) == 5
    by_id = {line["origin"]["message_id"]: line for line in seen}
    assert {key: line["payload"] for key, line in by_id.items()} == published
    for line in seen:
        n = json.loads(line["payload"])["n"]
        assert line["attributes"] == {"source": "test", "n": str(n)}
        assert line["origin"]["system"] == "pubsub"
        assert line["origin"].get("key") == (f"k{n}" if n % 2 else None)
        publish_time = line["origin"]["publish_time"]
        assert publish_time.endswith("Z")
        # Without timestamp_attribute a block is at the oldest publish time of its messages.
        assert Timestamp.of(line["timestamp"]) <= Timestamp.from_rfc3339(publish_time)
    oldest = min(Timestamp.from_rfc3339(line["origin"]["publish_time"]) for line in seen)
    assert min(Timestamp.of(line["timestamp"]) for line in seen) == oldest


@pytest.mark.integration
def test_source_takes_event_time_from_attribute(names: Names, tmp_path: Path) -> None:
    publisher = PublisherClient()
    stamps = ["2026-01-02T03:04:05.678Z", "1767323045678"]  # RFC 3339, epoch milliseconds
    for stamp in stamps:
        publisher.publish(names.topic, b"{}", ts=stamp).result()
    uri = f"pubsub://{names.subscription}?timestamp_attribute=ts"

    seen = _run_source(uri, tmp_path / "seen.jsonl", names.topic, 2)

    expected = Timestamp.from_rfc3339("2026-01-02T03:04:05.678Z")
    assert [Timestamp.of(line["timestamp"]) for line in seen] == [expected, expected]


class _Keep(beam.DoFn):
    """Pickles each element into its own file in a folder."""

    def __init__(self, folder: str) -> None:
        self._folder = folder

    def process(self, element: Any) -> None:
        Path(self._folder, uuid.uuid4().hex).write_bytes(pickle.dumps(element))


def _sink(
    uri: str, records: list[Record], tmp_path: Path
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Runs a batch pipeline into PubSubSink; returns its dead-letter dicts and counters."""
    kept = tmp_path / "dead_letters"
    kept.mkdir()
    pipeline = beam.Pipeline()
    output = (
        pipeline
        | beam.Create(records)
        | Batch()
        | PubSubSink(Endpoint.parse(uri), SinkContext("test"))
    )
    _ = output | beam.ParDo(_Keep(str(kept)))
    result = pipeline.run()
    result.wait_until_finish()
    failures = [pickle.loads(path.read_bytes()) for path in kept.iterdir()]
    return failures, counter_totals(result.metrics())


@pytest.mark.integration
def test_sink_publishes_json_with_attributes(names: Names, tmp_path: Path) -> None:
    origin = Message(b'{"raw": 1}', {"source": "web", "user_id": "old"}, Origin("file", line=1))
    records = [
        Record({"user_id": "u1", "amount": 3.5, "blob": b"\x00\xff", "ok": True}, origin),
        Record({"user_id": "u2", "amount": None}),
        Record({"amount": 7}),
    ]
    uri = f"pubsub://{names.topic}?attributes=user_id,amount&ordering_key=user_id"

    failures, counters = _sink(uri, records, tmp_path)

    assert failures == []
    assert counters["written"] == 3
    pulled = _pull(names.subscription, 3)
    got = sorted(
        ((json.loads(m.data), dict(m.attributes), m.ordering_key) for m in pulled),
        key=lambda item: item[0].get("user_id", ""),
    )
    blob = base64.b64encode(b"\x00\xff").decode()
    assert got == [
        ({"amount": 7}, {"amount": "7"}, ""),
        (
            {"amount": 3.5, "blob": blob, "ok": True, "user_id": "u1"},
            {"source": "web", "user_id": "u1", "amount": "3.5"},
            "u1",
        ),
        ({"amount": None, "user_id": "u2"}, {"user_id": "u2"}, "u2"),
    ]


@pytest.mark.integration
def test_sink_dead_letters_failed_publishes(
    pubsub_emulator: ServiceSpec, unique_name: str, tmp_path: Path
) -> None:
    # With an ordering key, the failed send pauses the key and the sink resumes it.
    missing = f"pubsub://projects/{PROJECT}/topics/{unique_name}?timeout=20&ordering_key=n"
    origin = Message(b"\x00original bytes", {"k": "v"}, Origin("pubsub", message_id="42"))
    records = [Record({"n": 1}, origin), Record({"n": 2})]

    failures, counters = _sink(missing, records, tmp_path)

    assert counters.get("written", 0) == 0
    assert len(failures) == 2
    by_payload = {failure["payload_bytes"]: failure for failure in failures}
    assert set(by_payload) == {b"\x00original bytes", b'{"n": 2}'}
    first = by_payload[b"\x00original bytes"]
    assert first["step"] == "sink"
    assert first["reason"] == "sink_unavailable"
    assert first["error_type"] == "NotFound"
    assert first["attributes"] == [{"key": "k", "value": "v"}]
    assert first["source"] == {"system": "pubsub", "message_id": "42"}
    assert unique_name in first["error_message"]


@pytest.mark.integration
def test_sink_dead_letters_a_refused_message_and_publishes_the_rest(
    names: Names, tmp_path: Path
) -> None:
    too_large = {"user_id": "u1", "text": "x" * (10 * 1024 * 1024)}
    records = [Record(too_large), Record({"user_id": "u1", "n": 2})]
    uri = f"pubsub://{names.topic}?ordering_key=user_id"

    failures, counters = _sink(uri, records, tmp_path)

    assert [(f["reason"], f["error_type"]) for f in failures] == [
        ("sink_rejected", "MessageTooLargeError")
    ]
    assert json.loads(failures[0]["payload_bytes"]) == too_large
    assert counters["written"] == 1
    assert [json.loads(m.data) for m in _pull(names.subscription, 1)] == [{"user_id": "u1", "n": 2}]


@pytest.mark.integration
def test_a_dead_letter_that_cannot_be_published_fails_the_bundle(
    pubsub_emulator: ServiceSpec, unique_name: str, tmp_path: Path
) -> None:
    missing = f"pubsub://projects/{PROJECT}/topics/{unique_name}?timeout=20"

    with pytest.raises(DeadLetterWriteError, match=f"not written .*{unique_name} failed: 404"):
        write_dead_letters([{"reason": "invalid_json"}], dead_letter_sink(missing, "test"))


def test_source_refuses_id_attribute_on_the_direct_runner() -> None:
    source = PubSubSource(
        Endpoint.parse("pubsub://projects/my-proj/subscriptions/sub?id_attribute=id")
    )
    assert source.id_attribute == "id"
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
    with pytest.raises(EndpointError, match="run on DataflowRunner, or drop id_attribute"):
        _ = pipeline | source


def test_source_and_sink_settings() -> None:
    source = PubSubSource(
        Endpoint.parse("pubsub://projects/my-proj/subscriptions/sub-1?timestamp_attribute=ts")
    )
    assert source.subscription == "projects/my-proj/subscriptions/sub-1"
    assert source.timestamp_attribute == "ts"
    assert source.id_attribute is None
    assert source.bounded is False
    assert source.runners == {"DirectRunner", "DataflowRunner"}
    sink = PubSubSink(
        Endpoint.parse("pubsub://projects/my-proj/topics/out?attributes=a,%20b&timeout=5"),
        SinkContext("test"),
    )
    assert (sink.topic, sink.attribute_fields, sink.ordering_key, sink.timeout) == (
        "projects/my-proj/topics/out",
        ("a", "b"),
        None,
        5.0,
    )


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pubsub://projects/my-proj/topics/events", "reading needs a subscription"),
        ("pubsub://projects/my-proj/subscriptions/events?id_label=x", "unknown parameters"),
        ("pubsub://projects/my-proj/subscriptions/events?timestamp_attribute=", "is empty"),
        ("pubsub://projects/my-proj/subscriptions", "expected pubsub://projects/PROJECT/subs"),
        ("pubsub://events", "expected pubsub://projects/PROJECT/subscriptions/NAME"),
        ("pubsub://projects:8085/p-1/subscriptions/events", "no host, port or user"),
        ("pubsub://projects/my-proj/subscriptions/ab", "not a valid Pub/Sub id"),
        ("pubsub://projects/p-1/subscriptions/events", "'p-1' is not a valid project id"),
        ("pubsub://projects/my-proj/subscriptions/goog-sub", "not a valid Pub/Sub id"),
    ],
)
def test_source_rejects_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message):
        PubSubSource(Endpoint.parse(uri))


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pubsub://projects/my-proj/subscriptions/events", "publishing needs a topic"),
        ("pubsub://projects/my-proj/topics/events?attribute=a", "unknown parameters"),
        ("pubsub://projects/my-proj/topics/events?timeout=0", "timeout must be positive"),
        ("pubsub://projects/my-proj/topics/events?timeout=soon", "not a valid float"),
        ("pubsub://projects/my-proj/topics/events?ordering_key=", "is empty"),
        ("pubsub://projects/my-proj/topics/1events", "not a valid Pub/Sub id"),
        ("pubsub://projects/My-Proj/topics/events", "'My-Proj' is not a valid project id"),
        ("pubsub://projects/my-proj/topics/a/b", "expected pubsub://projects/PROJECT/topics/NAME"),
    ],
)
def test_sink_rejects_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message):
        PubSubSink(Endpoint.parse(uri), SinkContext("test"))
