"""KafkaSource and KafkaSink against the real broker (noida-db), and their URI rules.

Each test uses its own topics and consumer groups (``unique_name``): other tests run against
the same broker at the same time. Expected values come from what the test produced (offsets
from the producer's delivery reports), never from the code under test.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.runner import PipelineState
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import ServiceSpec
from pipelines.framework.run import run_pipeline
from tests.support import write_dead_letters
from transforms.blocks import Batch
from transforms.dead_letter_writer import DeadLetterWriteError, dead_letter_sink
from transforms.event_time import format_timestamp
from transforms.io.base import SinkContext
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.kafka.bounded import share
from transforms.io.kafka.endpoints import KafkaSink, KafkaSource, java_consumer_config
from transforms.io.kafka.live import IDLE_SKEW_SECONDS, LiveKafkaReader
from transforms.io.kafka.read import java_row_to_message
from transforms.io.registry import make_sink, make_source
from transforms.message import Message, Origin, Record
from transforms.metrics import DEAD_LETTERED, READ, WRITTEN, counter_totals

pytestmark = pytest.mark.usefixtures("live_direct_runner")

PARTITIONS = 3
# Record timestamps an hour ago, on a whole minute: noida-db deletes records stamped older than
# its retention (a year-old record goes within seconds of the first fetch), whatever the offsets.
BASE_MS = (int(time.time()) // 60 - 60) * 60_000
DEADLINE = 60.0

# The DirectRunner runs DoFns in this process (on its own threads).
_LOCK = threading.Lock()
_COLLECTED: dict[str, list[Any]] = defaultdict(list)


class _Collect(beam.DoFn):
    """Collects ``(message, element timestamp)`` under a tag; a block's messages one by one."""

    def __init__(self, tag: str) -> None:
        self._tag = tag

    def process(self, element: Any, timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
        messages = element if isinstance(element, list) else [element]
        with _LOCK:
            _COLLECTED[self._tag].extend((message, float(timestamp)) for message in messages)
        yield element


class _FailOn(beam.DoFn):
    """Raises on the message with this payload (a run that fails before its end)."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def process(self, block: list[Message]) -> Iterator[list[Message]]:
        if any(message.payload == self._payload for message in block):
            raise RuntimeError("the sink broke")
        yield block


@pytest.fixture
def topic(kafka_broker: ServiceSpec, unique_name: str) -> Iterator[str]:
    """A fresh topic with three partitions, deleted after the test."""
    admin = AdminClient({"bootstrap.servers": kafka_broker.endpoint})
    for future in admin.create_topics([NewTopic(unique_name, PARTITIONS, 1)]).values():
        future.result(timeout=30)
    yield unique_name
    for future in admin.delete_topics([unique_name]).values():
        future.result(timeout=30)


def _produce(broker: str, topic: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Produces records (partition, key, value, headers, ms); returns them with their offsets."""
    producer = Producer({"bootstrap.servers": broker, "enable.idempotence": True})
    delivered: list[dict[str, Any]] = []
    for record in records:

        def report(error: Any, message: Any, record: dict[str, Any] = record) -> None:
            assert error is None, error
            delivered.append({**record, "offset": message.offset()})

        producer.produce(
            topic,
            value=record["value"],
            key=record.get("key"),
            partition=record["partition"],
            headers=record.get("headers"),
            timestamp=record["ms"],
            on_delivery=report,
        )
    assert producer.flush(30) == 0
    return delivered


def _events(broker: str, topic: str, count: int, first: int = 0) -> list[dict[str, Any]]:
    """Produces ``count`` small JSON records spread over the partitions."""
    records = [
        {
            "partition": n % PARTITIONS,
            "key": f"k{n}".encode(),
            "value": json.dumps({"n": n}).encode(),
            "ms": BASE_MS + n * 1000,
        }
        for n in range(first, first + count)
    ]
    return _produce(broker, topic, records)


def _run_read(
    uri: str, *, fail_on: bytes | None = None, commit: bool = False
) -> list[tuple[Message, float]]:
    """Runs a bounded read (committing after the last step if asked); returns what it read."""
    tag = uuid.uuid4().hex
    source = KafkaSource(Endpoint.parse(uri))
    pipeline = beam.Pipeline()
    messages = pipeline | source | beam.ParDo(_Collect(tag))
    if fail_on is not None:
        messages = messages | beam.ParDo(_FailOn(fail_on))
    if commit:
        source.commit_after(messages)
    pipeline.run().wait_until_finish()
    return _COLLECTED.pop(tag, [])


def _committed(broker: str, topic: str, group: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": broker, "group.id": group})
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return [tp.offset for tp in consumer.committed(partitions, timeout=10)]
    finally:
        consumer.close()


def _ends(broker: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "ends"})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        ]
    finally:
        consumer.close()


def _coordinates(read: list[tuple[Message, float]]) -> list[tuple[int, int]]:
    return sorted((m.origin.partition or 0, m.origin.offset or 0) for m, _ in read)


# ----------------------------------------------------------------- bounded source


@pytest.mark.integration
def test_bounded_read_keeps_every_record_with_its_coordinates(
    kafka_broker: ServiceSpec, topic: str
) -> None:
    records = [
        {
            "partition": n % PARTITIONS,
            "key": f"user-{n}".encode(),
            "value": json.dumps({"n": n}).encode(),
            "headers": [("source", b"web"), ("n", str(n).encode())],
            "ms": BASE_MS + n * 250,
        }
        for n in range(9)
    ]
    records += [
        # A delete's tombstone: same key, null value.
        {"partition": 1, "key": b"user-4", "value": None, "ms": BASE_MS + 10_000},
        # A binary key and a binary header value.
        {
            "partition": 2,
            "key": b"\xff\x00",
            "value": b"\x01raw",
            "headers": [("blob", b"\xfe\xff"), ("empty", None)],
            "ms": BASE_MS + 11_000,
        },
    ]
    produced = _produce(kafka_broker.endpoint, topic, records)

    read = _run_read(f"kafka://{kafka_broker.endpoint}/{topic}")

    assert _coordinates(read) == sorted((r["partition"], r["offset"]) for r in produced)
    by_place = {(m.origin.partition, m.origin.offset): (m, ts) for m, ts in read}
    for record in produced:
        message, timestamp = by_place[(record["partition"], record["offset"])]
        # A block of messages is at the oldest record timestamp among them.
        assert timestamp <= record["ms"] / 1000
        assert message.origin == Origin(
            "kafka",
            topic=topic,
            partition=record["partition"],
            offset=record["offset"],
            key=(
                record["key"].decode()
                if record["key"] != b"\xff\x00"
                else base64.b64encode(b"\xff\x00").decode()
            ),
            publish_time=format_timestamp(record["ms"] / 1000),
        )
        if record["value"] is None:
            assert message.payload == b""
            assert message.attributes == {"kafka.tombstone": "true"}
        elif record["key"] == b"\xff\x00":
            assert message.payload == b"\x01raw"
            assert message.attributes == {
                "blob": base64.b64encode(b"\xfe\xff").decode(),
                "empty": "",
                "kafka.base64_headers": "blob",
                "kafka.base64_key": "true",
            }
        else:
            assert message.payload == record["value"]
            assert message.attributes == {h: v.decode() for h, v in record["headers"]}


@pytest.mark.integration
def test_commit_after_writes_then_restart_reads_only_new_records(
    kafka_broker: ServiceSpec, topic: str, unique_name: str
) -> None:
    broker = kafka_broker.endpoint
    group = f"{unique_name}-group"
    uri = f"kafka://{broker}/{topic}?group={group}"
    first = _events(broker, topic, 12)

    read = _run_read(uri, commit=True)
    assert _coordinates(read) == sorted((r["partition"], r["offset"]) for r in first)
    assert _committed(broker, topic, group) == _ends(broker, topic)

    second = _events(broker, topic, 5, first=12)
    read = _run_read(uri, commit=True)
    assert _coordinates(read) == sorted((r["partition"], r["offset"]) for r in second)

    # A run that fails before its end commits nothing; the next one reads the same again.
    before = _committed(broker, topic, group)
    third = _events(broker, topic, 6, first=17)
    with pytest.raises(Exception, match="the sink broke"):
        _run_read(uri, fail_on=third[2]["value"], commit=True)
    assert _committed(broker, topic, group) == before
    read = _run_read(uri, commit=True)
    assert _coordinates(read) == sorted((r["partition"], r["offset"]) for r in third)
    assert _committed(broker, topic, group) == _ends(broker, topic)


@pytest.mark.integration
def test_max_records_reads_that_many_and_commits_exactly_those(
    kafka_broker: ServiceSpec, topic: str, unique_name: str
) -> None:
    broker = kafka_broker.endpoint
    produced = _events(broker, topic, 30)
    uri = f"kafka://{broker}/{topic}?group={unique_name}&max_records=7"

    first = _run_read(uri, commit=True)
    second = _run_read(uri, commit=True)

    assert len(first) == 7 and len(second) == 7
    assert not set(_coordinates(first)) & set(_coordinates(second))
    # Each run reads the start of what is left in each partition, shared 3 + 2 + 2.
    assert sorted(sum(1 for m, _ in first if m.origin.partition == p) for p in range(3)) == [
        2,
        2,
        3,
    ]
    committed = _committed(broker, topic, unique_name)
    assert sum(committed) == 14
    read = first + second
    for partition in range(PARTITIONS):
        offsets = sorted(m.origin.offset or 0 for m, _ in read if m.origin.partition == partition)
        assert offsets == list(range(committed[partition]))
    assert len(produced) == 30


def test_share_spreads_a_total_over_partitions() -> None:
    assert share([1, 10, 10], 9) == [1, 4, 4]
    assert share([10, 10, 10], 7) == [2, 2, 3]
    assert share([5, 5], 11) == [5, 5]
    assert share([2, 9, 9], 12) == [2, 5, 5]
    assert share([0, 5, 2], 100) == [0, 5, 2]
    assert share([4, 4], None) == [4, 4]
    assert share([], 5) == []


# ----------------------------------------------------------------- live source


@pytest.mark.integration
def test_live_read_ends_with_max_records_and_delivers_them_all(
    kafka_broker: ServiceSpec, topic: str, unique_name: str
) -> None:
    broker = kafka_broker.endpoint
    produced = _events(broker, topic, 15)
    source = make_source(f"kafka://{broker}/{topic}?group={unique_name}&live=true&max_records=15")
    assert isinstance(source, KafkaSource)
    assert (source.bounded, source.finite, source.live_on_direct) == (False, True, True)
    tag = uuid.uuid4().hex
    pipeline = beam.Pipeline(
        runner=BundleBasedDirectRunner(), options=PipelineOptions(streaming=True)
    )
    _ = pipeline | source | beam.ParDo(_Collect(tag))

    result = pipeline.run()
    waiter = threading.Thread(target=result.wait_until_finish, daemon=True)
    waiter.start()
    waiter.join(DEADLINE)
    if waiter.is_alive():
        result.cancel()
        pytest.fail("the live read did not end by itself")
    assert result.state == PipelineState.DONE

    read = _COLLECTED.pop(tag)
    assert _coordinates(read) == sorted((r["partition"], r["offset"]) for r in produced)
    assert min(ts for _, ts in read) == min(r["ms"] / 1000 for r in produced)
    assert sorted(m.origin.publish_time for m, _ in read) == sorted(
        format_timestamp(r["ms"] / 1000) for r in produced
    )
    # The offsets of every record handed to the runner are committed when the reader ends.
    assert _committed(broker, topic, unique_name) == _ends(broker, topic)


@pytest.mark.integration
def test_live_watermark_is_the_slowest_partition_and_idle_ones_do_not_hold_it(
    kafka_broker: ServiceSpec, topic: str
) -> None:
    broker = kafka_broker.endpoint
    now = BASE_MS / 1000 + 3600.0
    records = [{"partition": 0, "value": b"a", "ms": BASE_MS}]
    records += [{"partition": 1, "value": b"b", "ms": BASE_MS + 5000}]
    _produce(broker, topic, records)
    source = KafkaSource(Endpoint.parse(f"kafka://{broker}/{topic}?live=true"))
    reader = LiveKafkaReader(source.settings, clock=lambda: now)

    marks = [reader.watermark]
    elements: list[Any] = []
    deadline = time.monotonic() + DEADLINE
    while len(elements) < 2 or reader.watermark < now - IDLE_SKEW_SECONDS:
        assert time.monotonic() < deadline, f"watermark stuck at {reader.watermark}"
        elements += reader.read(100)
        marks.append(reader.watermark)

    assert sorted(float(e.timestamp) for e in elements) == [BASE_MS / 1000, BASE_MS / 1000 + 5]
    assert marks == sorted(marks), "the watermark went back"
    # Before every partition was caught up, it was held at the slowest partition's latest
    # record (partition 0's), never past it; once all are idle it follows the clock.
    held = [mark for mark in marks if BASE_MS / 1000 <= mark < now - IDLE_SKEW_SECONDS]
    assert all(mark == BASE_MS / 1000 for mark in held)
    assert reader.watermark == now - IDLE_SKEW_SECONDS
    assert not reader.done


# ----------------------------------------------------------------- sink


def _sink(
    uri: str, records: list[Record], context: SinkContext | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Runs records into KafkaSink; returns its dead-letter dicts and the counters."""
    tag = uuid.uuid4().hex
    pipeline = beam.Pipeline()
    output = (
        pipeline
        | beam.Create(records)
        | Batch()
        | KafkaSink(Endpoint.parse(uri), context or SinkContext("test"))
    )
    _ = output | beam.ParDo(_Collect(tag))
    result = pipeline.run()
    result.wait_until_finish()
    return [failure for failure, _ in _COLLECTED.pop(tag, [])], counter_totals(result.metrics())


def _consume(broker: str, topic: str, count: int) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": broker, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    received: list[Any] = []
    deadline = time.monotonic() + DEADLINE
    try:
        while len(received) < count and time.monotonic() < deadline:
            received += [m for m in consumer.consume(count, timeout=1.0) if m.error() is None]
    finally:
        consumer.close()
    return received


@pytest.mark.integration
def test_sink_writes_json_values_keys_and_headers(kafka_broker: ServiceSpec, topic: str) -> None:
    origin = Message(b'{"raw": 1}', {"source": "web"}, Origin("kafka", topic="in", offset=3))
    records = [
        Record({"user_id": "u1", "amount": 3.5, "blob": b"\x00\xff"}, origin),
        Record({"user_id": "u2", "amount": None}),
        Record({"amount": 7}),
    ]
    uri = f"kafka://{kafka_broker.endpoint}/{topic}?key=user_id&attributes=amount"

    failures, counters = _sink(uri, records)

    assert failures == []
    assert counters[WRITTEN] == 3
    got = sorted(
        (
            (
                json.loads(m.value()),
                m.key(),
                sorted((name, value.decode()) for name, value in m.headers() or []),
            )
            for m in _consume(kafka_broker.endpoint, topic, 3)
        ),
        key=lambda item: json.dumps(item[0], sort_keys=True),
    )
    blob = base64.b64encode(b"\x00\xff").decode()
    assert got == [
        (
            {"amount": 3.5, "blob": blob, "user_id": "u1"},
            b"u1",
            [("amount", "3.5"), ("source", "web")],
        ),
        ({"amount": 7}, None, [("amount", "7")]),
        ({"amount": None, "user_id": "u2"}, b"u2", []),
    ]


@pytest.mark.integration
def test_a_sink_of_original_messages_sends_the_payload_and_attributes_unchanged(
    kafka_broker: ServiceSpec, topic: str
) -> None:
    """What a replay of dead letters sends: the original bytes, headers and key."""
    origin = Message(b"{not json", {"dlq_replay_count": "1"}, Origin("kafka", key="k1"))
    uri = f"kafka://{kafka_broker.endpoint}/{topic}?key=key"

    failures, counters = _sink(uri, [Record({"key": "k1"}, origin)], SinkContext("t", raw=True))

    assert failures == [] and counters[WRITTEN] == 1
    (message,) = _consume(kafka_broker.endpoint, topic, 1)
    assert (message.value(), message.key()) == (b"{not json", b"k1")
    assert message.headers() == [("dlq_replay_count", b"1")]


@pytest.mark.integration
def test_sink_dead_letters_a_too_large_record_and_writes_the_rest(
    kafka_broker: ServiceSpec, topic: str
) -> None:
    origin = Message(
        b"\x00original", {"k": "v"}, Origin("kafka", topic="in", partition=1, offset=9)
    )
    records = [Record({"text": "x" * 5000}, origin), Record({"n": 2})]
    uri = f"kafka://{kafka_broker.endpoint}/{topic}?max_message_bytes=1000"

    failures, counters = _sink(uri, records)

    assert counters[WRITTEN] == 1
    assert [(f["step"], f["reason"]) for f in failures] == [("sink", "sink_rejected")]
    assert failures[0]["payload_bytes"] == b"\x00original"
    assert failures[0]["source"] == {"system": "kafka", "topic": "in", "partition": 1, "offset": 9}
    assert "Message size too large" in failures[0]["error_message"]
    assert [json.loads(m.value()) for m in _consume(kafka_broker.endpoint, topic, 1)] == [{"n": 2}]


@pytest.mark.integration
def test_sink_dead_letters_records_for_a_missing_topic_and_creates_none(
    kafka_broker: ServiceSpec, unique_name: str
) -> None:
    uri = f"kafka://{kafka_broker.endpoint}/{unique_name}?timeout=10"

    failures, counters = _sink(uri, [Record({"n": 1}), Record({"n": 2})])

    assert counters.get(WRITTEN, 0) == 0
    assert sorted(f["payload_bytes"] for f in failures) == [b'{"n": 1}', b'{"n": 2}']
    assert {f["reason"] for f in failures} == {"sink_unavailable"}
    assert all("does not create topics" in f["error_message"] for f in failures)
    admin = AdminClient({"bootstrap.servers": kafka_broker.endpoint})
    assert unique_name not in admin.list_topics(timeout=10).topics

    # A dead letter that cannot be written fails the bundle: it cannot be dead-lettered again.
    with pytest.raises(DeadLetterWriteError, match="not written .*does not create topics"):
        write_dead_letters([{"reason": "invalid_json"}], dead_letter_sink(uri, "test"))


# ----------------------------------------------------------------- pipeline


@pytest.mark.integration
def test_events_to_bigquery_from_kafka_balances_and_commits(
    kafka_broker: ServiceSpec, topic: str, unique_name: str, tmp_path: Path
) -> None:
    broker = kafka_broker.endpoint
    good = [
        {
            "event_id": f"e{n}",
            "ts": format_timestamp(BASE_MS / 1000 + n),
            "user_id": f"u{n % 4}",
            "event_type": "click",
        }
        for n in range(20)
    ]
    payloads = [json.dumps(event).encode() for event in good] + [b"{not json", b"[1]"]
    _produce(
        broker,
        topic,
        [
            {"partition": n % PARTITIONS, "value": p, "ms": BASE_MS + n}
            for n, p in enumerate(payloads)
        ],
    )
    argv = [
        f"--source=kafka://{broker}/{topic}?group={unique_name}",
        f"--sink=file://{tmp_path}/out",
        f"--dead_letter=file://{tmp_path}/dlq",
    ]

    report = run_pipeline(get_pipeline("events_to_bigquery"), argv)

    assert report.state == "DONE"
    assert (report.count(READ), report.count(WRITTEN), report.count(DEAD_LETTERED)) == (22, 20, 2)
    assert report.balanced
    files = (tmp_path / "out").glob("*.jsonl")
    written = [json.loads(line) for path in files for line in path.open()]
    assert sorted(row["event_id"] for row in written) == sorted(e["event_id"] for e in good)
    # The offsets were committed after the writes: a second run has nothing to read.
    assert _committed(broker, topic, unique_name) == _ends(broker, topic)
    again = run_pipeline(get_pipeline("events_to_bigquery"), argv)
    assert again.count(READ) == 0


# ----------------------------------------------------------------- impl=java seam


class _FakeJavaRead(beam.PTransform):
    """Stands in for Beam's ReadFromKafka: remembers its settings, emits metadata rows."""

    calls: list[dict[str, Any]] = []

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        _FakeJavaRead.calls.append(settings)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        rows = [
            beam.Row(
                topic="orders",
                partition=2,
                offset=offset,
                timestamp=BASE_MS + offset,
                key=b"k1",
                value=value,
                headers=[beam.Row(key="h", value=b"v")],
            )
            for offset, value in ((41, None), (42, b'{"a": 1}'))
        ]
        return pbegin | beam.Create(rows)


def test_java_impl_builds_its_graph_through_the_seam() -> None:
    uri = (
        "kafka://user@b1:9092,b2:9092/orders?impl=java&group=g1&max_records=10"
        "&security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-512&password_env=KAFKA_TEST_PW"
    )
    source = KafkaSource(Endpoint.parse(uri), java_read=_FakeJavaRead)
    assert source.runners == {"DataflowRunner", "FlinkRunner", "PortableRunner"}
    assert (source.bounded, source.finite, source.live_on_direct) == (True, True, False)
    _FakeJavaRead.calls.clear()
    pipeline = beam.Pipeline(runner="PortableRunner")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAFKA_TEST_PW", 'p"w')
        messages = pipeline | source
    assert isinstance(messages, beam.PCollection)
    [call] = _FakeJavaRead.calls
    config = call.pop("consumer_config")
    assert call == {"topic": "orders", "max_records": 10, "max_seconds": None, "commit": True}
    assert config["bootstrap.servers"] == "b1:9092,b2:9092"
    assert config["group.id"] == "g1"
    assert config["sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="user" password="p\\"w";'
    )

    with beam.Pipeline() as direct:  # the fake's rows, mapped as the Java read's would be
        tag = uuid.uuid4().hex
        _ = direct | _FakeJavaRead() | beam.Map(java_row_to_message) | beam.ParDo(_Collect(tag))
    read = sorted(_COLLECTED.pop(tag), key=lambda pair: pair[1])
    assert [timestamp for _, timestamp in read] == [(BASE_MS + 41) / 1000, (BASE_MS + 42) / 1000]
    assert [message.payload for message, _ in read] == [b"", b'{"a": 1}']
    assert [message.attributes for message, _ in read] == [
        {"h": "v", "kafka.tombstone": "true"},
        {"h": "v"},
    ]
    assert read[0][0].origin == Origin(
        "kafka",
        topic="orders",
        partition=2,
        offset=41,
        key="k1",
        publish_time=format_timestamp((BASE_MS + 41) / 1000),
    )


def test_java_impl_is_refused_on_the_direct_runner() -> None:
    source = make_source("kafka://b1:9092/orders?impl=java")
    with pytest.raises(EndpointError, match="not run on DirectRunner; .*: use impl=python"):
        _ = beam.Pipeline() | source


def test_live_read_is_refused_off_the_streaming_direct_runner() -> None:
    source = make_source("kafka://b1:9092/orders?live=true")
    assert source.runners == {"DirectRunner"}
    with pytest.raises(EndpointError, match="on Dataflow and Flink use impl=java"):
        _ = beam.Pipeline() | source


def test_the_graph_builds_without_a_broker_where_workers_read() -> None:
    # On the DirectRunner the brokers are asked first (test_source_checks.py); on Dataflow,
    # Flink or the PortableRunner the workers read, and the graph builds without a broker.
    source = KafkaSource(Endpoint.parse("kafka://127.0.0.1:1/nowhere?group=g"))
    pipeline = beam.Pipeline(runner="PortableRunner")
    messages = pipeline | source
    source.commit_after(messages)
    assert source.bounded and source.finite and source.runners >= {"DirectRunner", "FlinkRunner"}


# ----------------------------------------------------------------- URI rules


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("kafka://b1:9092", "name the topic"),
        ("kafka://b1:9092/", "name the topic"),
        ("kafka:///orders", "bootstrap servers as HOST:PORT"),
        ("kafka://b1/orders", "bootstrap servers as HOST:PORT"),
        ("kafka://b1:9092,b2/orders", "bootstrap servers as HOST:PORT"),
        ("kafka://b1:9092/a/b", "not a valid Kafka topic"),
        ("kafka://b1:9092/orders?topic=x", "unknown parameters"),
        ("kafka://b1:9092/orders?start=committed", "add group=G"),
        ("kafka://b1:9092/orders?start=now", "start must be one of"),
        ("kafka://b1:9092/orders?start=latest", "reads nothing: add live=true"),
        ("kafka://b1:9092/orders?group=", "group is empty"),
        ("kafka://b1:9092/orders?max_records=0", "max_records must be positive"),
        ("kafka://b1:9092/orders?max_seconds=soon", "not a valid float"),
        ("kafka://b1:9092/orders?live=maybe", "not a valid boolean"),
        ("kafka://b1:9092/orders?impl=scala", "impl must be one of"),
        ("kafka://b1:9092/orders?impl=java&live=true", "live applies to impl=python"),
        ("kafka://b1:9092/orders?security_protocol=TLS", "security_protocol must be one of"),
        ("kafka://b1:9092/orders?sasl_mechanism=PLAIN", "needs security_protocol=SASL_SSL"),
        (
            "kafka://b1:9092/orders?security_protocol=SASL_SSL&password_env=PW",
            "needs a user name",
        ),
        (
            "kafka://u@b1:9092/orders?security_protocol=SASL_SSL&sasl_mechanism=GSSAPI"
            "&password_env=PW",
            "sasl_mechanism must be one of",
        ),
        (
            "kafka://u@b1:9092/orders?security_protocol=SASL_SSL&sasl_username=v&password_env=PW",
            "give the user name once",
        ),
        (
            "kafka://u@b1:9092/orders?security_protocol=SASL_SSL&password_secret=nope",
            "not a secret reference",
        ),
    ],
)
def test_source_rejects_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message):
        KafkaSource(Endpoint.parse(uri))


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("kafka://b1:9092/orders?group=g", "unknown parameters"),
        ("kafka://b1:9092/orders?key=", "key is empty"),
        ("kafka://b1:9092/orders?timeout=0", "timeout must be positive"),
        ("kafka://b1:9092/orders?max_message_bytes=10", "between 1000 and"),
        ("kafka://b1:9092", "name the topic"),
    ],
)
def test_sink_rejects_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message):
        make_sink(uri, SinkContext("test"))


@pytest.mark.parametrize(
    "uri",
    [
        "kafka://user:s3cr3t-pw@b1:9092/orders?security_protocol=PLAINTEXT",
        "kafka://user:s3cr3t-pw@b1:9092/orders?security_protocol=SASL_SSL&password_env=PW",
        "kafka://user:s3cr3t-pw@b1:9092/orders?security_protocol=SASL_SSL&start=never",
        "kafka://user:s3cr3t-pw@b1:9092?security_protocol=SASL_SSL",
    ],
)
def test_a_password_never_shows_in_errors(uri: str) -> None:
    with pytest.raises(EndpointError) as caught:
        KafkaSource(Endpoint.parse(uri))
    assert "s3cr3t" not in str(caught.value)
    assert "user:***@" in str(caught.value)


def test_sasl_settings_and_a_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = (
        "kafka://b1:9092,b2:9093/orders?security_protocol=sasl_ssl&sasl_username=svc"
        "&password_env=KAFKA_TEST_PW&group=g&start=earliest&max_seconds=2.5"
    )
    source = KafkaSource(Endpoint.parse(uri))
    monkeypatch.setenv("KAFKA_TEST_PW", "from-env")
    config = source.settings.connection.client_config()
    assert config == {
        "bootstrap.servers": "b1:9092,b2:9093",
        "security.protocol": "SASL_SSL",
        "client.id": "beam-streaming-suite",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "svc",
        "sasl.password": "from-env",
    }
    assert "from-env" not in repr(source.settings)
    settings = source.settings
    assert (settings.group, settings.start, settings.max_seconds) == ("g", "earliest", 2.5)
    assert java_consumer_config(settings)["auto.offset.reset"] == "earliest"
