"""The bigquery:// sink's Storage Write API method against the BigQuery emulator's gRPC API."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import types

from pipelines.devtools.services.specs import EXTRA_ENV, ServiceSpec
from tests.support import run_sink
from transforms.io.base import SinkContext
from transforms.io.bigquery.client import bounded_retry, make_client
from transforms.io.bigquery.ledger import LEDGER_SUFFIX
from transforms.io.bigquery.rows import RowEncoder
from transforms.io.bigquery.sink import BigQuerySink
from transforms.io.bigquery.write_api import (
    AlreadyWritten,
    NotAppended,
    append,
    create_committed_stream,
    make_write_client,
    stream_parent,
)
from transforms.io.endpoint import EndpointError
from transforms.io.registry import make_sink
from transforms.message import Message, Origin, Record
from transforms.schema import Field, Schema

pytestmark = pytest.mark.integration

PROJECT = "local-project"
TIMEOUT = 30.0
SCHEMA = Schema(
    (
        Field("id", "INTEGER", "REQUIRED"),
        Field("name", "STRING"),
        Field("ts", "TIMESTAMP"),
        Field("day", "DATE"),
        Field("amount", "NUMERIC"),
        Field("tags", "STRING", "REPEATED"),
        Field("blob", "BYTES"),
    )
)
ROWS = [
    {"id": 1, "name": "a", "ts": "2026-11-25T10:00:00Z", "day": "2026-11-25", "amount": "1.25",
     "tags": ["x", "y"], "blob": "aGk="},
    {"id": 2, "name": None, "ts": 1_795_600_800, "tags": []},
    {"id": 3, "name": "c", "ts": "2026-11-27T00:00:00.5Z", "amount": 7},
]  # fmt: skip
BAD = {7: {"id": 7, "ts": "not a time"}, 8: {"id": "eight"}, 9: {"name": "no id"}}


def _record(line: int, data: dict[str, Any]) -> Record:
    payload = json.dumps(data).encode("utf-8")
    return Record(data, Message(payload, {}, Origin("file", path="/in.jsonl", line=line)))


@pytest.fixture
def client(bigquery_emulator: ServiceSpec) -> Iterator[bigquery.Client]:
    bq = make_client(PROJECT, bigquery_emulator.endpoint)
    yield bq
    bq.close()


def _rows(client: bigquery.Client, table: str) -> list[dict[str, Any]]:
    job = client.query(f"SELECT * FROM `{table}` ORDER BY id", job_retry=None, timeout=TIMEOUT)
    return [dict(row) for row in job.result(timeout=TIMEOUT, retry=bounded_retry(TIMEOUT))]


def _sink(spec: ServiceSpec, table: str, query: str = "") -> BigQuerySink:
    uri = f"bigquery://{PROJECT}/{table}?endpoint={spec.endpoint}{query}"
    sink = make_sink(uri, SinkContext(pipeline="test_pipeline", schema=SCHEMA))
    assert isinstance(sink, BigQuerySink)
    return sink


@pytest.mark.parametrize("mode", ["at_least_once", "exactly_once"])
def test_rows_land_equal_to_the_input_and_bad_rows_are_dead_lettered(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, unique_name: str, mode: str
) -> None:
    table = f"{PROJECT}.{unique_name}.events"
    sink = _sink(bigquery_emulator, f"{unique_name}.events", f"&mode={mode}&batch_size=2")
    records = [_record(i, row) for i, row in enumerate(ROWS)]
    records += [_record(line, row) for line, row in BAD.items()]

    def check(dead_letters: list[dict[str, Any]]) -> None:
        by_line = {d["source"]["line"]: d for d in dead_letters}
        assert sorted(by_line) == sorted(BAD)
        for line, letter in by_line.items():
            assert letter["reason"] == "sink_rejected" and letter["step"] == "sink"
            assert json.loads(letter["payload_bytes"]) == BAD[line]
        assert "ts" in by_line[7]["error_message"] and "id" in by_line[8]["error_message"]
        assert "REQUIRED" in by_line[9]["error_message"]

    counters = run_sink(records, sink, check)

    assert counters["written"] == len(ROWS)
    got = _rows(client, table)
    assert [row["id"] for row in got] == [1, 2, 3]
    assert got[0]["tags"] == ["x", "y"] and bytes(got[0]["blob"]) == b"hi"
    assert str(got[0]["amount"]).startswith("1.25") and got[0]["day"].isoformat() == "2026-11-25"
    assert got[1]["ts"].timestamp() == 1_795_600_800 and got[1]["name"] is None
    assert got[2]["ts"] == dt.datetime(2026, 11, 27, 0, 0, 0, 500_000, tzinfo=dt.timezone.utc)
    ledger = client.get_table(table + LEDGER_SUFFIX, retry=None) if mode == "exactly_once" else None
    assert (ledger is not None) == (mode == "exactly_once")


def test_a_rerun_of_the_same_records_in_exactly_once_mode_writes_nothing_twice(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, unique_name: str
) -> None:
    """The second run is a new worker: it settles each record through the write log."""
    table = f"{PROJECT}.{unique_name}.events"
    records = [_record(i, row) for i, row in enumerate(ROWS)]
    for _ in range(2):
        sink = _sink(bigquery_emulator, f"{unique_name}.events", "&mode=exactly_once")
        assert run_sink(records, sink)["written"] == len(ROWS)
    assert [row["id"] for row in _rows(client, table)] == [1, 2, 3]


def test_a_committed_stream_refuses_an_offset_twice_and_one_past_its_end(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, unique_name: str
) -> None:
    """What exactly-once rests on, as the emulator does it."""
    table = f"{PROJECT}.{unique_name}.events"
    run_sink([], _sink(bigquery_emulator, f"{unique_name}.events"))  # creates the table
    writer = make_write_client(None)
    encoder = RowEncoder(SCHEMA)
    stream = create_committed_stream(writer, table)
    rows = [encoder.encode({"id": i}) for i in (1, 2)]
    assert append(writer, stream, encoder.descriptor, rows, 0) == []
    with pytest.raises(AlreadyWritten):
        append(writer, stream, encoder.descriptor, rows, 0)
    with pytest.raises(NotAppended):
        append(writer, stream, encoder.descriptor, rows, 5)
    assert [row["id"] for row in _rows(client, table)] == [1, 2]


def test_row_errors_of_the_api_are_returned_with_their_reason() -> None:
    """bqemulator never answers with row errors: a stand-in client answers as BigQuery does."""

    class StandIn:
        def append_rows(self, requests: Any, **_: Any) -> list[types.AppendRowsResponse]:
            next(iter(requests))
            error = types.RowError(index=1, code=types.RowError.RowErrorCode.FIELDS_ERROR,
                                   message="Field amount: value out of range")  # fmt: skip
            return [types.AppendRowsResponse(row_errors=[error])]

    encoder = RowEncoder(SCHEMA)
    refused = append(StandIn(), "s", encoder.descriptor, [b"", b""])  # type: ignore[arg-type]
    assert refused == [(1, "FIELDS_ERROR: Field amount: value out of range")]
    assert stream_parent("p.d.t") == "projects/p/datasets/d/tables/t"


def test_wrong_write_options_are_refused_before_the_run(
    bigquery_emulator: ServiceSpec, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for query, message in [
        ("&mode=twice", "mode must be one of"),
        ("&method=insert_all&mode=exactly_once", "need method=storage_write"),
        ("&schema_update=all", "schema_update must be one of"),
        ("&partition_type=WEEK", "partition_type must be one of"),
    ]:
        with pytest.raises(EndpointError, match=message):
            _sink(bigquery_emulator, f"{unique_name}.events", query)
    (variable,) = EXTRA_ENV["bigquery"]
    monkeypatch.delenv(variable)
    with pytest.raises(EndpointError, match=f"storage_endpoint=HOST:PORT or set {variable}"):
        _sink(bigquery_emulator, f"{unique_name}.events")
