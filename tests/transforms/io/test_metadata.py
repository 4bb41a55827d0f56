"""Source metadata as columns (``metadata=true``): what fills them, hostile values, refusals.

The Pub/Sub and Kinesis runs into BigQuery that check their metadata columns are the
events_to_bigquery runs of ``tests/pipelines/test_events_to_bigquery_live.py`` and
``tests/transforms/io/test_kinesis.py``; Kafka (with binary keys and headers) and files are here.
Expected values come from the producer's delivery reports and the input files.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import BIGQUERY_PROJECT, ServiceSpec
from pipelines.framework.run import run_pipeline
from transforms.io.base import SinkContext
from transforms.io.bigquery.client import ensure_table, make_client
from transforms.io.endpoint import EndpointError
from transforms.io.metadata import METADATA_SCHEMA, metadata_columns
from transforms.io.registry import make_sink
from transforms.message import Message, Origin, Record
from transforms.metrics import READ, WRITTEN
from transforms.schema import Schema

BIG_HEADER = b"h" * 300_000  # far over any Pub/Sub attribute, well under a request's 9 MB
BINARY_KEY, BINARY_HEADER = b"\xff\xfe\x00k", b"\x80\x81\x00"


def event(i: int) -> bytes:
    return json.dumps({"event_id": f"e{i}", "ts": time.time(), "user_id": f"u{i}",
                       "event_type": "click"}).encode()  # fmt: skip


def test_records_without_a_message_get_no_columns_and_attributes_are_kept_whole() -> None:
    assert metadata_columns(Record({"n": 1}), attributes_as_text=True) == {}
    huge = {"big": "é" * 1_000_000, "kafka.base64_key": "true"}
    message = Message(b"{}", huge, Origin("kafka", topic="t", partition=0, offset=7, key="a2V5"))
    text = metadata_columns(Record({}, message), attributes_as_text=True)
    assert json.loads(text["_meta_attributes"]) == huge
    as_object = metadata_columns(Record({}, message), attributes_as_text=False)
    assert as_object["_meta_attributes"] == huge
    assert set(as_object) == {"_meta_system", "_meta_topic", "_meta_partition", "_meta_offset",
                              "_meta_key", "_meta_attributes"}  # fmt: skip
    assert set(as_object) <= set(METADATA_SCHEMA.names)
    generated = Message(b"{}", {}, Origin("generator", message_id="e1", offset=0))
    assert metadata_columns(Record({}, generated), attributes_as_text=True) == {
        "_meta_system": "generator", "_meta_message_id": "e1", "_meta_offset": 0}  # fmt: skip


@pytest.mark.parametrize(
    ("uri", "context", "problem"),
    [
        ("file:///tmp/out?metadata=true", SinkContext("p", raw=True), "drop metadata=true"),
        ("file:///tmp/out?metadata=maybe", SinkContext("p"), "metadata"),
        ("bigquery://proj:d.t?metadata=true&method=insert_all&endpoint=http://127.0.0.1:1",
         SinkContext("p", Schema.from_bigquery([{"name": "_meta_key", "type": "STRING"}])),
         "rename those fields"),
    ],
)  # fmt: skip
def test_sink_uris_that_cannot_hold_metadata_are_refused(
    uri: str, context: SinkContext, problem: str
) -> None:
    with pytest.raises(EndpointError, match=problem):
        make_sink(uri, context)


@pytest.mark.integration
def test_an_existing_table_without_the_columns_is_refused_when_the_sink_is_built(
    bigquery_emulator: ServiceSpec, unique_name: str
) -> None:
    client = make_client(BIGQUERY_PROJECT, bigquery_emulator.endpoint)
    table = f"{BIGQUERY_PROJECT}.{unique_name}.plain"
    ensure_table(client, table, Schema.from_bigquery([{"name": "id", "type": "STRING"}]))
    try:
        with pytest.raises(EndpointError, match="lacks the metadata columns"):
            make_sink(f"bigquery://{BIGQUERY_PROJECT}:{unique_name}.plain?metadata=true&"
                      f"endpoint={bigquery_emulator.endpoint}", SinkContext("p"))  # fmt: skip
    finally:
        client.delete_dataset(f"{BIGQUERY_PROJECT}.{unique_name}", delete_contents=True,
                              not_found_ok=True)  # fmt: skip


@pytest.fixture(scope="module")
def kafka_rows(
    kafka_broker: ServiceSpec, bigquery_emulator: ServiceSpec, tmp_path_factory: Any
) -> Iterator[tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], str]]:
    """One events_to_bigquery run from a Kafka topic into a table with metadata=true.

    Yields ``(rows by event id, produced records by event id, topic)``.
    """
    topic = f"t{time.time_ns():x}"
    admin = AdminClient({"bootstrap.servers": kafka_broker.endpoint})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)
    now = int(time.time() * 1000)
    records = {
        "e1": {"key": b"user-1", "headers": [("origin", b"web")]},
        "e2": {"key": BINARY_KEY, "headers": [("blob", BINARY_HEADER), ("big", BIG_HEADER)]},
        "e3": {},
    }
    producer = Producer({"bootstrap.servers": kafka_broker.endpoint})
    for i, record in enumerate(records.values(), start=1):
        record["ms"] = now + i

        def report(error: Any, message: Any, record: dict[str, Any] = record) -> None:
            assert error is None, error
            record["offset"] = message.offset()

        producer.produce(topic, value=event(i), key=record.get("key"),
                         headers=record.get("headers"), timestamp=record["ms"],
                         on_delivery=report)  # fmt: skip
    assert producer.flush(30) == 0
    client = make_client(BIGQUERY_PROJECT, bigquery_emulator.endpoint)
    dataset = topic
    try:
        report = run_pipeline(
            get_pipeline("events_to_bigquery"),
            [f"--source=kafka://{kafka_broker.endpoint}/{topic}", "--schema=builtin:events",
             f"--sink=bigquery://{BIGQUERY_PROJECT}:{dataset}.events?metadata=true&"
             f"endpoint={bigquery_emulator.endpoint}",
             f"--dead_letter=file://{tmp_path_factory.mktemp('dlq')}"],
        )  # fmt: skip
        assert (report.count(READ), report.count(WRITTEN)) == (3, 3)
        query = client.query(f"SELECT * FROM `{BIGQUERY_PROJECT}.{dataset}.events`")
        rows = {row["event_id"]: dict(row) for row in query.result(timeout=60)}
        yield rows, records, topic
    finally:
        client.delete_dataset(f"{BIGQUERY_PROJECT}.{dataset}", delete_contents=True,
                              not_found_ok=True)  # fmt: skip
        for future in admin.delete_topics([topic]).values():
            future.result(timeout=30)


@pytest.mark.integration
def test_kafka_coordinates_key_headers_and_timestamp_fill_their_columns(kafka_rows: Any) -> None:
    rows, records, topic = kafka_rows
    assert set(rows) == set(records)
    for event_id, record in records.items():
        row = rows[event_id]
        assert (row["_meta_system"], row["_meta_topic"], row["_meta_partition"],
                row["_meta_offset"]) == ("kafka", topic, 0, record["offset"])  # fmt: skip
        assert row["_meta_publish_time"].timestamp() == record["ms"] / 1000
        assert row["_meta_stream"] is None and row["_meta_message_id"] is None
    assert rows["e1"]["_meta_key"] == "user-1"
    assert rows["e1"]["_meta_attributes"] == {"origin": "web"}
    assert rows["e3"]["_meta_key"] is None and rows["e3"]["_meta_attributes"] is None


@pytest.mark.integration
def test_binary_keys_and_headers_land_in_base64_and_a_large_header_whole(kafka_rows: Any) -> None:
    rows, _, _ = kafka_rows
    row = rows["e2"]
    assert base64.b64decode(row["_meta_key"]) == BINARY_KEY
    attributes = row["_meta_attributes"]
    assert attributes["kafka.base64_key"] == "true"
    assert attributes["kafka.base64_headers"] == "blob"
    assert base64.b64decode(attributes["blob"]) == BINARY_HEADER
    assert attributes["big"].encode() == BIG_HEADER


@pytest.mark.integration
def test_file_sink_writes_each_line_s_path_and_number(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(event(i) for i in range(3)) + b"\n")
    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        [f"--source=file://{source}", "--schema=builtin:events",
         f"--sink=file://{tmp_path}/out?metadata=true", f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip
    assert report.count(WRITTEN) == 3
    written = [json.loads(line) for path in (tmp_path / "out").glob("*.jsonl") for line in
               path.open()]  # fmt: skip
    by_line = {row["_meta_line"]: row for row in written}
    assert sorted(by_line) == [1, 2, 3]
    for number, row in by_line.items():
        assert row["event_id"] == f"e{number - 1}"
        assert (row["_meta_system"], row["_meta_path"]) == ("file", str(source))
        assert "_meta_attributes" not in row and "_meta_topic" not in row
