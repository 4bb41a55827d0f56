"""The bigquery:// sink against the real BigQuery emulator (bqemulator), through Beam pipelines."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from google.cloud import bigquery

from pipelines.devtools.services.specs import ServiceSpec
from tests.support import run_sink, write_dead_letters
from transforms.blocks import Block
from transforms.dead_letter import (
    DEAD_LETTER_SCHEMA,
    MAX_PAYLOAD_PREFIX,
    error_record,
    truncate_payload,
)
from transforms.dead_letter_writer import (
    WRITTEN_DEAD_LETTERS,
    DeadLetterWriteError,
    dead_letter_sink,
)
from transforms.io.base import SinkContext
from transforms.io.bigquery.client import bounded_retry, ensure_table, make_client
from transforms.io.bigquery.sink import (
    MAX_REQUEST_BYTES,
    ROW_TOO_LARGE,
    BigQuerySink,
    InsertRowsFn,
    InsertTarget,
    insert_id,
    to_json_row,
)
from transforms.io.endpoint import EndpointError
from transforms.io.registry import make_sink
from transforms.io.retry import RetryPolicy
from transforms.message import Message, Origin, Record
from transforms.schema import Field, Schema

PROJECT = "local-project"
TIMEOUT = 30.0
SCHEMA = Schema(
    (
        Field("id", "INTEGER", "REQUIRED"),
        Field("name", "STRING"),
        Field("ts", "TIMESTAMP"),
        Field("amount", "FLOAT"),
    )
)
EVENT_TIME = 1_795_600_800.0  # 2026-11-25T10:00:00Z


def _record(line: int, data: dict[str, Any]) -> Record:
    """A record parsed from line ``line`` of a file, keeping the original bytes."""
    payload = json.dumps(data).encode("utf-8")
    return Record(data, Message(payload, {"k": "v"}, Origin("file", path="/in.jsonl", line=line)))


def _query(client: bigquery.Client, sql: str) -> list[dict[str, Any]]:
    job = client.query(sql, timeout=TIMEOUT, retry=bounded_retry(TIMEOUT), job_retry=None)
    return [dict(row) for row in job.result(timeout=TIMEOUT, retry=bounded_retry(TIMEOUT))]


@pytest.fixture
def client(bigquery_emulator: ServiceSpec) -> Iterator[bigquery.Client]:
    bq = make_client(PROJECT, bigquery_emulator.endpoint)
    yield bq
    bq.close()


@pytest.fixture
def dataset(client: bigquery.Client, unique_name: str) -> Iterator[str]:
    """A dataset name unique to the test, deleted (with its tables) afterwards."""
    yield unique_name
    client.delete_dataset(
        f"{PROJECT}.{unique_name}",
        delete_contents=True,
        not_found_ok=True,
        timeout=TIMEOUT,
        retry=bounded_retry(TIMEOUT),
    )


def _sink(spec: ServiceSpec, table: str, query: str = "", **context: Any) -> BigQuerySink:
    uri = f"bigquery://{PROJECT}/{table}?endpoint={spec.endpoint}{query}"
    sink = make_sink(uri, SinkContext(pipeline="test_pipeline", **context))
    assert isinstance(sink, BigQuerySink)
    return sink


def _dead_letter_sink(spec: ServiceSpec, table: str, query: str = "") -> BigQuerySink:
    uri = f"bigquery://{PROJECT}/{table}?endpoint={spec.endpoint}{query}"
    sink = dead_letter_sink(uri, "test_pipeline")
    assert isinstance(sink, BigQuerySink)
    return sink


@pytest.mark.integration
def test_good_rows_land_in_a_new_day_partitioned_table(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    rows: list[dict[str, Any]] = [
        {"id": 1, "name": "a", "ts": "2026-11-25T10:00:00Z", "amount": 1.5},
        {"id": 2, "name": "b", "ts": "2026-11-26T11:30:00Z", "amount": None},
        {"id": 3, "name": None, "ts": "2026-11-27T00:00:00Z", "amount": -2.25},
    ]
    sink = _sink(
        bigquery_emulator,
        f"{dataset}.events",
        "&partition_field=ts&cluster=name&batch_size=2",
        schema=SCHEMA,
    )

    counters = run_sink([_record(i, row) for i, row in enumerate(rows, 1)], sink)

    assert counters["written"] == 3
    table = client.get_table(f"{PROJECT}.{dataset}.events", timeout=TIMEOUT)
    assert table.time_partitioning.type_ == "DAY"
    assert table.time_partitioning.field == "ts"
    assert table.clustering_fields == ["name"]
    assert [f.name for f in table.schema] == ["id", "name", "ts", "amount"]
    got = _query(
        client, f"SELECT id, name, ts, amount FROM `{PROJECT}.{dataset}.events` ORDER BY id"
    )
    expected = [
        {**row, "ts": dt.datetime.fromisoformat(row["ts"].replace("Z", "+00:00"))} for row in rows
    ]
    assert got == expected


@pytest.mark.integration
def test_bad_type_rows_are_dead_lettered_and_good_rows_of_the_batch_written(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    good_1 = _record(1, {"id": 1, "name": "a", "ts": "2026-11-25T10:00:00Z", "amount": 1.0})
    bad = _record(2, {"id": "abc", "name": "b", "ts": "2026-11-25T10:00:00Z", "amount": 2.0})
    good_3 = _record(3, {"id": 3, "name": "c", "ts": "2026-11-25T10:00:00Z", "amount": 3.0})
    timestamped = [r._replace(event_time=EVENT_TIME) for r in (good_1, bad, good_3)]
    sink = _sink(bigquery_emulator, f"{dataset}.events", "&partition_field=ts", schema=SCHEMA)

    def check(dead_letters: list[dict[str, Any]]) -> None:
        assert len(dead_letters) == 1, dead_letters
        (letter,) = dead_letters
        assert letter["reason"] == "sink_rejected"
        assert letter["step"] == "sink"
        assert letter["pipeline"] == "test_pipeline"
        assert letter["error_type"] == "SinkRejected"
        assert "abc" in letter["error_message"]
        assert letter["payload_bytes"] == json.dumps(bad.data).encode("utf-8")
        assert letter["attributes"] == [{"key": "k", "value": "v"}]
        assert letter["source"] == {"system": "file", "path": "/in.jsonl", "line": 2}
        assert letter["event_timestamp"] == "2026-11-25T10:00:00Z"

    counters = run_sink(timestamped, sink, check)

    assert counters["written"] == 2
    got = _query(client, f"SELECT id, name FROM `{PROJECT}.{dataset}.events` ORDER BY id")
    assert got == [{"id": 1, "name": "a"}, {"id": 3, "name": "c"}]


@pytest.mark.integration
def test_a_request_failing_with_5xx_dead_letters_its_batch_as_sink_unavailable(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    # The emulator answers HTTP 500 to the whole insertAll request, even with skipInvalidRows,
    # when a JSON column gets an object instead of JSON text: a real transient-looking server
    # failure. (An INTEGER out of the 64-bit range did too; the sink now refuses it itself.)
    good = _record(1, {"id": 1, "name": "a", "doc": "{}"})
    poison = _record(2, {"id": 2, "name": "b", "doc": {"a": 1}})
    schema = Schema((*SCHEMA.fields, Field("doc", "JSON")))
    sink = _sink(
        bigquery_emulator, f"{dataset}.events", "&attempts=1&method=insert_all", schema=schema
    )

    def check(dead_letters: list[dict[str, Any]]) -> None:
        assert sorted(d["source"]["line"] for d in dead_letters) == [1, 2]
        assert {d["reason"] for d in dead_letters} == {"sink_unavailable"}
        assert {d["error_type"] for d in dead_letters} == {"InternalServerError"}

    counters = run_sink([good, poison], sink, check)

    assert counters.get("written", 0) == 0
    assert _query(client, f"SELECT id FROM `{PROJECT}.{dataset}.events`") == []


@pytest.mark.integration
def test_a_row_over_the_request_limit_is_dead_lettered_truncated_and_the_rest_written(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    good_1 = _record(1, {"id": 1, "name": "a"})
    huge = _record(2, {"id": 2, "name": "z" * (MAX_REQUEST_BYTES + 1)})
    good_3 = _record(3, {"id": 3, "name": "c"})
    sink = _sink(bigquery_emulator, f"{dataset}.events", schema=SCHEMA)

    def check(dead_letters: list[dict[str, Any]]) -> None:
        assert len(dead_letters) == 1, [d["reason"] for d in dead_letters]
        (letter,) = dead_letters
        assert letter["reason"] == ROW_TOO_LARGE
        assert letter["source"] == {"system": "file", "path": "/in.jsonl", "line": 2}
        assert letter["payload_truncated"] is True
        assert letter["payload_bytes"] == huge.origin.payload[:MAX_PAYLOAD_PREFIX]
        assert letter["payload_size"] == len(huge.origin.payload)
        assert letter["payload_sha256"] == hashlib.sha256(huge.origin.payload).hexdigest()
        assert letter["payload_string"] is None

    counters = run_sink([good_1, huge, good_3], sink, check)

    assert counters["written"] == 2
    got = _query(client, f"SELECT id FROM `{PROJECT}.{dataset}.events` ORDER BY id")
    assert got == [{"id": 1}, {"id": 3}]


def _target(spec: ServiceSpec, table: str, schema: Schema, **options: Any) -> InsertTarget:
    """The insert DoFn's settings for ``table`` of the emulator, one attempt per request."""
    return InsertTarget(
        table=f"{PROJECT}.{table}",
        project=PROJECT,
        endpoint=spec.endpoint,
        schema=schema,
        create="if_needed",
        partition_field=None,
        clustering=(),
        batch_size=500,
        retry=RetryPolicy(attempts=1),
        pipeline="test_pipeline",
        counter="written",
        **options,
    )


@pytest.mark.integration
def test_insert_requests_are_cut_under_the_byte_limit(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    limit = 2_000
    records = [_record(i, {"id": i, "name": "n" * 400}) for i in range(10)]
    sizes = [len(json.dumps(to_json_row(r.data))) for r in records]
    target = _target(
        bigquery_emulator,
        f"{dataset}.events",
        SCHEMA,
        inserted_tag="inserted",
        max_request_bytes=limit,
    )
    with beam.Pipeline() as pipeline:
        results = (
            pipeline
            | beam.Create([Block(records)], reshuffle=False)
            | beam.ParDo(InsertRowsFn(target)).with_outputs("inserted", main="dead")
        )

        def check(requests: list[tuple[str, int]]) -> None:
            counts = [count for _, count in requests]
            assert sum(counts) == len(records)
            assert len(counts) > 1
            # Every request holds at most as many rows as fit under the limit.
            assert max(counts) <= limit // min(sizes)

        assert_that(results.inserted, check, label="requests")
        assert_that(results.dead, equal_to([]), label="no dead letters")

    got = _query(client, f"SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.events`")
    assert got == [{"n": len(records)}]


@pytest.mark.integration
def test_a_row_over_the_limit_is_shrunk_when_the_context_can(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    payload = b"x" * (2 * MAX_PAYLOAD_PREFIX)
    letter = error_record(
        Message(payload, {}, Origin("file", path="/in", line=1)),
        pipeline="p",
        step="enrich",
        reason="enrich_failed",
        error_type="E",
        error_message="no",
    )
    target = _target(
        bigquery_emulator,
        f"{dataset}.errors",
        DEAD_LETTER_SCHEMA,
        shrink=truncate_payload,
        max_request_bytes=MAX_PAYLOAD_PREFIX * 2,  # the whole payload in base64 is over it
    )
    with beam.Pipeline() as pipeline:
        dead = (
            pipeline
            | beam.Create([Block([Record(letter)])], reshuffle=False)
            | beam.ParDo(InsertRowsFn(target))
        )
        assert_that(dead, equal_to([]))

    got = _query(
        client,
        f"SELECT payload_bytes, payload_truncated, payload_size FROM `{PROJECT}.{dataset}.errors`",
    )
    assert got == [
        {
            "payload_bytes": payload[:MAX_PAYLOAD_PREFIX],
            "payload_truncated": True,
            "payload_size": len(payload),
        }
    ]


def test_values_insertall_cannot_take_are_dead_lettered_and_the_rest_written(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    good = [_record(1, {"id": 1, "amount": 1.5}), _record(2, {"id": 2**63 - 1})]
    poison = {
        3: {"id": 2**64},
        4: {"id": 4, "amount": float("nan")},
        5: {"id": 5, "amount": float("-inf")},
    }
    sink = _sink(bigquery_emulator, f"{dataset}.events", "&method=insert_all", schema=SCHEMA)

    def check(dead_letters: list[dict[str, Any]]) -> None:
        assert sorted(d["source"]["line"] for d in dead_letters) == sorted(poison)
        assert {(d["step"], d["reason"]) for d in dead_letters} == {("sink", "sink_rejected")}

    counters = run_sink(good + [_record(line, data) for line, data in poison.items()], sink, check)

    assert counters["written"] == len(good)
    ids = _query(client, f"SELECT id FROM `{PROJECT}.{dataset}.events` ORDER BY id")
    assert ids == [{"id": 1}, {"id": 2**63 - 1}]


@pytest.mark.integration
def test_dead_letter_sink_writes_dead_letter_rows_with_bytes(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    not_utf8 = Message(b"\xff\xfe{bad", {}, Origin("file", path="/in.jsonl", line=7))
    letters = [
        error_record(
            not_utf8,
            pipeline="p",
            step="parse",
            reason="invalid_utf8",
            error_type="InvalidUtf8",
            error_message="not UTF-8",
            event_timestamp=EVENT_TIME,
        ),
        error_record(
            _record(8, {"id": "x"}),
            pipeline="p",
            step="sink",
            reason="sink_rejected",
            error_type="SinkRejected",
            error_message="bad id",
        ),
    ]
    sink = _dead_letter_sink(
        bigquery_emulator, f"{dataset}.errors", "&partition_field=error_timestamp"
    )

    counters = write_dead_letters(letters, sink)

    assert "written" not in counters
    assert counters[WRITTEN_DEAD_LETTERS] == counters["dead_lettered"] == 2
    table = client.get_table(f"{PROJECT}.{dataset}.errors", timeout=TIMEOUT)
    # The emulator refuses the dead-letter schema over REST (nested field ``offset``), so the
    # table is created with DDL, for which it records no partitioning: only the schema is checked.
    assert [f.name for f in table.schema] == list(DEAD_LETTER_SCHEMA.names)
    source = next(f for f in table.schema if f.name == "source")
    assert [f.name for f in source.fields] == list(Origin._fields)
    got = _query(
        client,
        "SELECT reason, payload_bytes, payload_string, source, event_timestamp, attributes "
        f"FROM `{PROJECT}.{dataset}.errors` ORDER BY reason",
    )
    assert [row["reason"] for row in got] == ["invalid_utf8", "sink_rejected"]
    assert got[0]["payload_bytes"] == b"\xff\xfe{bad"
    assert got[0]["payload_string"] is None
    assert got[0]["source"]["line"] == 7
    assert got[0]["event_timestamp"] == dt.datetime(2026, 11, 25, 10, tzinfo=dt.timezone.utc)
    assert got[1]["payload_bytes"] == b'{"id": "x"}'
    assert got[1]["attributes"] == [{"key": "k", "value": "v"}]


@pytest.mark.integration
def test_a_dead_letter_row_rejected_fails_the_bundle(
    bigquery_emulator: ServiceSpec, dataset: str
) -> None:
    letter = error_record(
        Message(b"x", {}, Origin("file")),
        pipeline="p",
        step="parse",
        reason="invalid_json",
        error_type="InvalidJson",
        error_message="no",
    )
    letter["retry_count"] = "many"  # INTEGER column
    sink = _dead_letter_sink(bigquery_emulator, f"{dataset}.errors")

    with pytest.raises(DeadLetterWriteError, match=f"{dataset}.errors.*not written .sink_rejected"):
        write_dead_letters([letter], sink)


@pytest.mark.integration
def test_create_never_fails_on_a_missing_table(
    bigquery_emulator: ServiceSpec, dataset: str
) -> None:
    sink = _sink(bigquery_emulator, f"{dataset}.missing", "&create=never")

    with pytest.raises(Exception, match="Not found"):
        run_sink([_record(1, {"id": 1})], sink)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("bigquery://local-project/events", "name the table as"),
        ("bigquery://local-project/ds.t.x", "name the table as"),
        ("bigquery://Local_Project/ds.t", "name the table as"),
        ("bigquery://local-project/ds.t?colour=red", "unknown parameters ['colour']"),
        ("bigquery://local-project/ds.t?partition_field=nope", "partition_field 'nope'"),
        ("bigquery://local-project/ds.t?partition_field=name", "must be a TIMESTAMP or DATE"),
        ("bigquery://local-project/ds.t?cluster=id,nope", "cluster field 'nope'"),
        ("bigquery://local-project/ds.t?cluster=amount", "cluster field 'amount'"),
        ("bigquery://local-project/ds.t?cluster=id,,name", "comma-separated"),
        ("bigquery://local-project/ds.t?create=always", "create must be one of"),
        ("bigquery://local-project/ds.t?batch_size=0", "batch_size must be positive"),
        ("bigquery://local-project/ds.t?batch_size=50001", "at most 50000"),
        ("bigquery://local-project/ds.t?endpoint=127.0.0.1:9050", "http:// or https://"),
    ],
)
def test_bad_uris_are_refused_before_any_pipeline_runs(uri: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_sink(uri, SinkContext(pipeline="p", schema=SCHEMA))


@pytest.mark.integration
def test_without_a_schema_the_existing_tables_is_used_and_a_missing_table_refused(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    with pytest.raises(EndpointError, match="does not exist .* pass --schema"):
        _sink(bigquery_emulator, f"{dataset}.events")
    ensure_table(client, f"{PROJECT}.{dataset}.events", SCHEMA)

    sink = _sink(bigquery_emulator, f"{dataset}.events")

    assert sink.schema == SCHEMA
    assert run_sink([_record(1, {"id": 7, "name": "x"})], sink)["written"] == 1
    assert _query(client, f"SELECT id, name FROM `{PROJECT}.{dataset}.events`") == [
        {"id": 7, "name": "x"}
    ]


def test_create_if_needed_requires_a_schema_or_a_readable_table() -> None:
    with pytest.raises(EndpointError, match="pass --schema"):
        make_sink(
            "bigquery://local-project/ds.t?endpoint=http://127.0.0.1:9",
            SinkContext(pipeline="p"),
        )
    with pytest.raises(EndpointError, match="apply only to a table the sink creates"):
        make_sink(
            "bigquery://local-project/ds.t?create=never&partition_field=ts",
            SinkContext(pipeline="p", schema=SCHEMA),
        )
    sink = make_sink("bigquery://local-project/ds.t?create=never", SinkContext(pipeline="p"))
    assert isinstance(sink, BigQuerySink)
    assert sink.table == "local-project.ds.t"


def test_project_colon_form_names_the_same_table() -> None:
    sink = make_sink(
        "bigquery://local-project:ds.Events_T?batch_size=10",
        SinkContext(pipeline="p", schema=SCHEMA),
    )
    assert isinstance(sink, BigQuerySink)
    assert sink.table == "local-project.ds.Events_T"
    assert sink.batch_size == 10


def test_rows_become_json_with_bytes_as_base64() -> None:
    row = {"b": b"\xff", "nested": {"list": [b"hi", 1, ("x", b"")]}, "s": "t"}
    converted = to_json_row(row)
    assert converted == {"b": "/w==", "nested": {"list": ["aGk=", 1, ["x", ""]]}, "s": "t"}
    assert base64.b64decode(converted["b"]) == b"\xff"
    json.dumps(converted)


def test_insert_ids_follow_the_origin_and_else_the_row() -> None:
    first = _record(1, {"id": 1})
    again = _record(1, {"id": 1, "enriched": "later"})
    other = _record(2, {"id": 1})
    assert insert_id(first, first.data) == insert_id(again, again.data)
    assert insert_id(first, first.data) != insert_id(other, other.data)
    derived = Record({"id": 1})
    assert insert_id(derived, {"id": 1}) == insert_id(Record({"id": 1}), {"id": 1})
    assert insert_id(derived, {"id": 1}) != insert_id(Record({"id": 2}), {"id": 2})
    assert len(insert_id(first, first.data)) == 64
