"""The kinesis:// source and sink against a real Kinesis API (moto server), through Beam.

Expected records and coordinates come from the ``PutRecords`` answers of the server. moto does
not fail part of a ``PutRecords`` call by itself, so the retry test wraps a real client's
``put_records`` to fail a subset of the records the first time: that is the one place where a
wrapper stands in for the server. moto keeps routing puts to a split shard, and a shard it
closed never ends its iterator, so the children stay empty here: the reshard tests show that
nothing is lost or doubled while the stream is resharded, not the reading of filled children.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import BIGQUERY_PROJECT, ServiceSpec
from pipelines.framework.run import run_pipeline
from transforms.blocks import Batch
from transforms.event_time import parse_timestamp
from transforms.io.base import SinkContext
from transforms.io.bigquery.client import bounded_retry
from transforms.io.bigquery.client import make_client as bigquery_client
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.kinesis import write
from transforms.io.kinesis.client import StreamTarget, list_shards, make_client
from transforms.io.kinesis.endpoints import KinesisSource
from transforms.io.kinesis.read import KinesisLiveReader, ReadSettings, read_lineage
from transforms.io.kinesis.write import KinesisSink
from transforms.io.registry import make_sink, make_source
from transforms.message import Message, Origin, Record
from transforms.metrics import DEAD_LETTERED, READ, WRITTEN, counter_totals

pytestmark = pytest.mark.usefixtures("live_direct_runner")

REGION = "us-east-1"
DEADLINE_S = 60.0

# Module-level: the DirectRunner runs DoFns in this process.
_LOCK = threading.Lock()
_CALLS: list[list[str]] = []
_COLLECTED: dict[str, list[Any]] = defaultdict(list)


def _collect(element: Any, tag: str) -> None:
    with _LOCK:
        _COLLECTED[tag].append(element)


def collected(pcoll: beam.PCollection) -> list[Any]:
    """Returns the list that ``pcoll``'s elements are put into when the pipeline runs."""
    tag = uuid.uuid4().hex
    _ = pcoll | f"Collect {tag}" >> beam.Map(_collect, tag)
    return _COLLECTED[tag]


def uri(server: ServiceSpec, stream: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"region": REGION, "endpoint": server.endpoint,
                                              **params}.items())  # fmt: skip
    return f"kinesis://{stream}?{query}"


def client_for(server: ServiceSpec) -> Any:
    return make_client(StreamTarget("x", REGION, server.endpoint, "kinesis://x"))


@pytest.fixture
def stream(kinesis_server: ServiceSpec, unique_name: str) -> Iterator[str]:
    """A fresh 3-shard stream, deleted afterwards."""
    client = client_for(kinesis_server)
    client.create_stream(StreamName=unique_name, ShardCount=3)
    yield unique_name
    client.delete_stream(StreamName=unique_name)


def put(client: Any, stream: str, payloads: list[bytes], keys: list[str]) -> dict[tuple, tuple]:
    """Puts records; returns ``{(shard, sequence): (payload, key)}`` from the server's answer."""
    entries = [{"Data": p, "PartitionKey": k} for p, k in zip(payloads, keys, strict=True)]
    answer = client.put_records(StreamName=stream, Records=entries)
    assert answer["FailedRecordCount"] == 0
    return {
        (r["ShardId"], r["SequenceNumber"]): (e["Data"], e["PartitionKey"])
        for r, e in zip(answer["Records"], entries, strict=True)
    }


def coordinates(block: list[Message], timestamp: Any = beam.DoFn.TimestampParam) -> list[tuple]:
    """The coordinates of a block's messages; the block is at the oldest arrival time in it."""
    arrivals = []
    found = []
    for message in block:
        origin = message.origin
        assert origin.publish_time is not None
        arrivals.append(parse_timestamp(origin.publish_time))
        assert message.attributes == {"partition_key": origin.key}
        found.append((origin.stream, origin.shard, origin.sequence, message.payload, origin.key))
    assert float(timestamp) == pytest.approx(min(arrivals), abs=1e-3)
    return found


def read_all(source_uri: str) -> list[tuple]:
    """Runs a bounded read of ``source_uri`` and returns what `coordinates` makes of it."""
    with beam.Pipeline() as pipeline:
        found = collected(pipeline | make_source(source_uri) | beam.FlatMap(coordinates))
    return found


# --- URIs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kinesis://bad%20name?region=r", "not a stream name"),
        ("kinesis://s", "give region=R"),
        ("kinesis://s?region=r&iterator=OLDEST", "iterator must be one of"),
        ("kinesis://s?region=r&iterator=AT_TIMESTAMP", "at=ISO-8601"),
        ("kinesis://s?region=r&at=2026-11-25T10:00:00Z", "at=ISO-8601"),
        ("kinesis://s?region=r&iterator=LATEST", "add live=true"),
        ("kinesis://s?region=r&max_records=0", "must be positive"),
        ("kinesis://s?region=r&impl=scala", "impl must be one of"),
        ("kinesis://s?region=r&impl=java", "max_records / max_seconds"),
        ("kinesis://s?region=r&endpoint=127.0.0.1:5055", "http:// or https://"),
        ("kinesis://s?region=r&shards=2", "unknown parameters"),
    ],
)
def test_source_uri_problems_are_named(text: str, problem: str) -> None:
    with pytest.raises(EndpointError, match=problem):
        make_source(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kinesis://s?region=r&partition_key=", "partition_key is empty"),
        ("kinesis://s?region=r&batch_size=501", "at most 500"),
        ("kinesis://s?region=r&attempts=0", "attempts must be forever"),
        ("kinesis://s?region=r&iterator=LATEST", "unknown parameters"),
    ],
)
def test_sink_uri_problems_are_named(text: str, problem: str) -> None:
    with pytest.raises(EndpointError, match=problem):
        make_sink(text, SinkContext("test"))


def test_source_modes() -> None:
    bounded = make_source("kinesis://Clicks.v2?region=r")
    assert isinstance(bounded, KinesisSource)
    assert bounded.settings.target.stream == "Clicks.v2"  # case kept
    assert (bounded.bounded, bounded.finite, bounded.live_on_direct) == (True, True, False)
    live = make_source("kinesis://s?region=r&live=true&iterator=LATEST")
    assert (live.bounded, live.finite, live.live_on_direct) == (False, False, True)
    capped = make_source("kinesis://s?region=r&live=true&max_seconds=5")
    assert (capped.bounded, capped.finite) == (False, True)


def test_java_read_is_refused_on_the_direct_runner_naming_impl_python() -> None:
    source = make_source("kinesis://s?region=r&impl=java&live=true")
    with pytest.raises(EndpointError, match="use impl=python"):
        _ = beam.Pipeline() | source


def test_java_read_builds_for_dataflow_through_its_factory() -> None:
    seen: list[ReadSettings] = []

    def fake_java_read(settings: ReadSettings) -> beam.PTransform:
        seen.append(settings)
        return beam.Create([b'{"a": 1}'])

    endpoint = Endpoint.parse("kinesis://s?region=eu-west-1&impl=java&max_records=10")
    source = KinesisSource(endpoint, java_read=fake_java_read)
    dataflow = ["--runner=DataflowRunner", "--project=p-123456", "--region=europe-west1",
                "--temp_location=gs://bucket/tmp", "--dry_run=True", "--no_auth"]  # fmt: skip
    pipeline = beam.Pipeline(options=PipelineOptions(dataflow))
    messages = pipeline | source

    assert [(s.target.stream, s.target.region, s.max_records) for s in seen] == [
        ("s", "eu-west-1", 10)
    ]
    assert messages.producer.inputs[0].producer.full_label.endswith("Messages")
    assert source.bounded and source.finite


# --- reads ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_bounded_read_returns_exactly_the_records_put_before_it(
    kinesis_server: ServiceSpec, stream: str
) -> None:
    client = client_for(kinesis_server)
    put_before = put(client, stream, [f'{{"n": {i}}}'.encode() for i in range(45)],
                     [f"user-{i}" for i in range(45)])  # fmt: skip
    assert len({shard for shard, _ in put_before}) == 3

    found = read_all(uri(kinesis_server, stream))
    put(client, stream, [b"after"], ["late"])

    expected = sorted((stream, shard, seq, data, key)
                      for (shard, seq), (data, key) in put_before.items())  # fmt: skip
    assert sorted(found) == expected


@pytest.mark.integration
def test_resharding_between_puts_and_during_a_read_loses_nothing(
    kinesis_server: ServiceSpec, stream: str
) -> None:
    client = client_for(kinesis_server)
    payloads = [f"r{i}".encode() for i in range(60)]
    keys = [f"k{i}" for i in range(60)]
    put(client, stream, payloads[:30], keys[:30])
    client.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000",
                       NewStartingHashKey=str(2**125))  # fmt: skip
    put(client, stream, payloads[30:], keys[30:])

    target = StreamTarget.from_endpoint(Endpoint.parse(uri(kinesis_server, stream)))
    settings = ReadSettings(target)
    started = time.time()
    read: list[bytes] = []
    from_zero = 0
    # Shards 1 and 2 first: moto rewrites a split shard's records with new arrival times (real
    # Kinesis never rewrites records), so the shards split below are ones already read, or the
    # children of shard 0, which moto leaves empty.
    for root in ("shardId-000000000001", "shardId-000000000002", "shardId-000000000000"):
        for message in read_lineage(client, settings, root, started, limit=4):
            read.append(message.value.payload)
            from_zero += message.value.origin.shard == "shardId-000000000000"
            if from_zero == 5:
                # In the middle of shard 0: every open shard splits, its children included.
                client.update_shard_count(StreamName=stream, TargetShardCount=8,
                                          ScalingType="UNIFORM_SCALING")  # fmt: skip

    assert sorted(read) == sorted(payloads)
    shards = list_shards(client, stream)
    assert len([s for s in shards if not s.closed]) == 8
    assert from_zero > 5, "shard 0 was resharded in the middle of its read"
    assert sorted(row[3] for row in read_all(uri(kinesis_server, stream))) == sorted(payloads)


@pytest.mark.integration
def test_live_reader_reads_every_shard_and_its_watermark_follows_arrivals(
    kinesis_server: ServiceSpec, stream: str
) -> None:
    client = client_for(kinesis_server)
    put_first = put(client, stream, [b"a", b"b", b"c", b"d", b"e", b"f"],
                    ["k1", "k2", "k3", "k4", "k5", "k6"])  # fmt: skip
    target = StreamTarget.from_endpoint(Endpoint.parse(uri(kinesis_server, stream)))
    reader = KinesisLiveReader(ReadSettings(target))

    def read_until(count: int) -> list[Any]:
        got: list[Any] = []
        marks = [reader.watermark]
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < count and time.monotonic() < deadline:
            got += reader.read(100)
            marks.append(reader.watermark)
        assert marks == sorted(marks), "the watermark never goes back"
        return got

    first = read_until(len(put_first))
    assert sorted((m.value.origin.shard, m.value.origin.sequence) for m in first) == sorted(
        put_first
    )
    newest = max(float(m.timestamp) for m in first)
    assert reader.read(100) == []  # every shard caught up: idle shards follow the wall clock
    assert newest <= reader.watermark <= time.time()
    put_later = put(client, stream, [b"g"], ["k7"])
    later = read_until(1)
    assert [(m.value.origin.shard, m.value.origin.sequence) for m in later] == list(put_later)
    assert not reader.done


@pytest.mark.integration
def test_live_reader_with_max_records_stops_each_shard(
    kinesis_server: ServiceSpec, stream: str
) -> None:
    client = client_for(kinesis_server)
    answer = put(client, stream, [f"{i}".encode() for i in range(30)],
                 [f"k{i}" for i in range(30)])  # fmt: skip
    target = StreamTarget.from_endpoint(Endpoint.parse(uri(kinesis_server, stream)))
    reader = KinesisLiveReader(ReadSettings(target, max_records=2))
    got: list[Any] = []
    deadline = time.monotonic() + DEADLINE_S
    while not reader.done and time.monotonic() < deadline:
        got += reader.read(100)
    first_two = sorted(
        (shard, seq) for shard, seq in answer if int(seq) <= 2
    )  # moto numbers each shard's records from 1
    assert sorted((m.value.origin.shard, m.value.origin.sequence) for m in got) == first_two


# --- sink ----------------------------------------------------------------------------------


def _record(i: int, user: str) -> Record:
    data = {"n": i, "user_id": user}
    payload = json.dumps(data).encode()
    return Record(data, Message(payload, {}, Origin("file", path="/in.jsonl", line=i + 1)))


def _stream_records(client: Any, stream: str) -> list[tuple[dict[str, Any], str]]:
    out = []
    for shard in list_shards(client, stream):
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard.shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for r in client.get_records(ShardIterator=iterator, Limit=1000)["Records"]:
            out.append((json.loads(r["Data"]), r["PartitionKey"]))
    return out


def _write(records: list[Record], sink: KinesisSink, dead: list[dict[str, Any]]) -> dict:
    pipeline = beam.Pipeline()
    failures = pipeline | beam.Create(records, reshuffle=False) | Batch() | sink
    found = collected(failures)
    result = pipeline.run()
    result.wait_until_finish()
    dead.extend(found)
    return counter_totals(result.metrics())


@pytest.mark.integration
def test_sink_round_trip_keeps_data_and_partition_keys(
    kinesis_server: ServiceSpec, stream: str
) -> None:
    records = [_record(i, f"u{i % 4}") for i in range(40)]
    sink = make_sink(uri(kinesis_server, stream, partition_key="user_id", batch_size="7"),
                     SinkContext("test"))  # fmt: skip
    dead: list[dict[str, Any]] = []

    counters = _write(records, sink, dead)

    assert dead == []
    assert counters[WRITTEN] == len(records)
    stored = _stream_records(client_for(kinesis_server), stream)
    assert sorted(stored, key=lambda s: s[0]["n"]) == [(r.data, r.data["user_id"]) for r in records]
    got = read_all(uri(kinesis_server, stream))
    assert sorted(json.loads(row[3])["n"] for row in got) == list(range(40))


class _FailFirstCall:
    """A real client whose ``put_records`` fails some records the first time it is called.

    Records whose partition key starts with ``throttle`` fail the first call with
    ``ProvisionedThroughputExceededException``; ``always-throttled`` ones fail every call;
    ``refused`` ones fail every call with a non-retryable code. The others are really put.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._calls = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self._calls += 1
        with _LOCK:
            _CALLS.append([r["PartitionKey"] for r in Records])

        def fails(key: str) -> str | None:
            if key.startswith("always-throttled") or (key.startswith("throttle")
                                                      and self._calls == 1):  # fmt: skip
                return "ProvisionedThroughputExceededException"
            return "KMSAccessDeniedException" if key.startswith("refused") else None

        codes = [fails(r["PartitionKey"]) for r in Records]
        passed = [r for r, code in zip(Records, codes, strict=True) if code is None]
        answers = iter(
            self._client.put_records(StreamName=StreamName, Records=passed)["Records"]
            if passed else []
        )  # fmt: skip
        results = [
            next(answers) if code is None else {"ErrorCode": code, "ErrorMessage": "test"}
            for code in codes
        ]
        return {"FailedRecordCount": sum(c is not None for c in codes), "Records": results}


@pytest.mark.integration
def test_failed_subset_of_a_put_is_retried_then_dead_lettered_by_error_code(
    kinesis_server: ServiceSpec, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = make_client
    monkeypatch.setattr(
        write, "make_client", lambda target, retries=10: _FailFirstCall(real(target, retries))
    )
    _CALLS.clear()
    keys = ["ok-1", "throttle-1", "ok-2", "throttle-2", "refused-1", "always-throttled-1"]
    records = [_record(i, key) for i, key in enumerate(keys)]
    sink = make_sink(uri(kinesis_server, stream, partition_key="user_id", attempts="2"),
                     SinkContext("test"))  # fmt: skip
    dead: list[dict[str, Any]] = []

    counters = _write(records, sink, dead)

    assert _CALLS == [keys, ["throttle-1", "throttle-2", "always-throttled-1"]]
    stored = sorted(key for _, key in _stream_records(client_for(kinesis_server), stream))
    assert stored == ["ok-1", "ok-2", "throttle-1", "throttle-2"]
    assert counters[WRITTEN] == 4
    by_key = {json.loads(d["payload_string"])["user_id"]: d for d in dead}
    assert {k: d["reason"] for k, d in by_key.items()} == {
        "refused-1": "sink_rejected", "always-throttled-1": "sink_unavailable"
    }  # fmt: skip
    assert by_key["always-throttled-1"]["source"] == {"system": "file", "path": "/in.jsonl",
                                                      "line": 6}  # fmt: skip
    assert "after 2 attempts" in by_key["always-throttled-1"]["error_message"]


# --- Kinesis -> BigQuery ---------------------------------------------------------------------


def table_rows(client: Any, table: str) -> list[dict[str, Any]]:
    job = client.query(f"SELECT * FROM `{table}`", timeout=30, retry=bounded_retry(30),
                       job_retry=None)  # fmt: skip
    return [dict(row) for row in job.result(timeout=30, retry=bounded_retry(30))]


@pytest.mark.integration
def test_events_to_bigquery_from_kinesis_lands_rows_and_balances(
    kinesis_server: ServiceSpec, bigquery_emulator: ServiceSpec, stream: str
) -> None:
    client = client_for(kinesis_server)
    events = [{"event_id": f"e{i}", "ts": 1_795_600_800 + i, "user_id": f"u{i % 3}",
               "event_type": "click"} for i in range(9)]  # fmt: skip
    answer = put(client, stream, [json.dumps(e).encode() for e in events] + [b"{broken"],
                 [e["user_id"] for e in events] + ["bad"])  # fmt: skip
    bad_shard, bad_sequence = next(c for c, (data, _) in answer.items() if data == b"{broken")
    dataset = stream
    endpoint = f"endpoint={bigquery_emulator.endpoint}"
    bq = bigquery_client(BIGQUERY_PROJECT, bigquery_emulator.endpoint)
    try:
        report = run_pipeline(
            get_pipeline("events_to_bigquery"),
            [f"--source={uri(kinesis_server, stream)}", "--schema=builtin:events",
             f"--sink=bigquery://{BIGQUERY_PROJECT}:{dataset}.events?metadata=true&{endpoint}",
             f"--dead_letter=bigquery://{BIGQUERY_PROJECT}:{dataset}.dead_letter?{endpoint}"],
        )  # fmt: skip
        assert report.balanced
        assert (report.count(READ), report.count(WRITTEN), report.count(DEAD_LETTERED)) == (
            10,
            9,
            1,
        )
        landed = table_rows(bq, f"{BIGQUERY_PROJECT}.{dataset}.events")
        assert sorted(r["event_id"] for r in landed) == sorted(e["event_id"] for e in events)
        # metadata=true: each row carries the coordinates Kinesis gave its record when put.
        where = {(r["_meta_shard"], r["_meta_sequence"]): r for r in landed}
        for coordinates, (data, key) in answer.items():
            if data == b"{broken":
                continue
            row = where[coordinates]
            assert row["event_id"] == json.loads(data)["event_id"]
            assert (row["_meta_system"], row["_meta_stream"], row["_meta_key"]) == (
                "kinesis", stream, key)  # fmt: skip
            assert row["_meta_attributes"] == {"partition_key": key}
            assert row["_meta_publish_time"] is not None and row["_meta_topic"] is None
        (dead,) = table_rows(bq, f"{BIGQUERY_PROJECT}.{dataset}.dead_letter")
        assert dead["reason"] == "invalid_json"
        assert bytes(dead["payload_bytes"]) == b"{broken"
        source = {k: v for k, v in dead["source"].items() if v is not None}
        assert {k: source[k] for k in ("system", "stream", "shard", "sequence", "key")} == {
            "system": "kinesis", "stream": stream, "shard": bad_shard,
            "sequence": bad_sequence, "key": "bad",
        }  # fmt: skip
    finally:
        bq.delete_dataset(f"{BIGQUERY_PROJECT}.{dataset}", delete_contents=True,
                          not_found_ok=True, timeout=30)  # fmt: skip


@pytest.mark.integration
def test_live_read_on_the_streaming_direct_runner_writes_every_record(
    kinesis_server: ServiceSpec, stream: str, unique_name: str
) -> None:
    client = client_for(kinesis_server)
    out = f"{unique_name}out"
    client.create_stream(StreamName=out, ShardCount=1)
    events = [{"event_id": f"e{i}", "ts": time.time(), "user_id": f"u{i}", "event_type": "view"}
              for i in range(12)]  # fmt: skip
    put(client, stream, [json.dumps(e).encode() for e in events], [f"u{i}" for i in range(12)])
    try:
        # Kinesis in and out: the file sink's streaming writes wait for a 60 s trigger.
        report = run_pipeline(
            get_pipeline("events_to_bigquery"),
            [f"--source={uri(kinesis_server, stream, live='true', max_seconds='3')}",
             f"--sink={uri(kinesis_server, out, partition_key='user_id')}",
             f"--dead_letter={uri(kinesis_server, out)}"],
        )  # fmt: skip
        written = _stream_records(client, out)
    finally:
        client.delete_stream(StreamName=out)

    assert report.balanced
    assert report.count(WRITTEN) == len(events)
    assert sorted(data["event_id"] for data, _ in written) == sorted(e["event_id"] for e in events)
    assert {data["user_id"] for data, _ in written} == {key for _, key in written}
