"""Schema evolution of the bigquery:// sink (``schema_update=add_fields``).

bqemulator 1.4 applies a patch that adds columns to the table's metadata only (the next write
using them fails inside it) and ignores the ETag of a patch (CONTRIBUTING, quirks). So: the
decisions and the ``tables.get``/``tables.patch`` calls are tested against the emulator, and
the whole write (new columns first, then their values land) against `StandIn`, a small
stand-in that behaves as BigQuery documents: ``tables.patch`` with a stale ETag fails with HTTP
412, and an append whose writer schema has a field the table lacks is refused as a whole.
CONTRIBUTING.md says how to run the same tests against a real project.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import types
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.rpc import status_pb2

from tests.support import run_sink
from transforms.io.base import SinkContext
from transforms.io.bigquery import storage_write
from transforms.io.bigquery.client import ensure_table, make_client
from transforms.io.bigquery.evolve import SchemaMismatch, add_fields
from transforms.io.registry import make_sink
from transforms.message import Message, Origin, Record
from transforms.schema import Field, Schema

PROJECT = "local-project"
SCHEMA = Schema((Field("id", "INTEGER", "REQUIRED"), Field("name", "STRING")))


def _names(client: Any, table: str) -> dict[str, tuple[str, str]]:
    return {f.name: (f.field_type, f.mode) for f in client.get_table(table).schema}


@pytest.fixture
def emulated_table(bigquery_emulator: Any, unique_name: str) -> Iterator[tuple[Any, str]]:
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    table = f"{PROJECT}.{unique_name}.events"
    ensure_table(client, table, SCHEMA)
    yield client, table
    client.delete_dataset(f"{PROJECT}.{unique_name}", delete_contents=True, not_found_ok=True)
    client.close()


@pytest.mark.integration
def test_new_fields_become_nullable_columns_of_inferred_types(
    emulated_table: tuple[Any, str],
) -> None:
    client, table = emulated_table
    declared = Schema((*SCHEMA.fields, Field("when", "TIMESTAMP")))
    values = {"country": "fr", "score": 1.5, "n": 3, "ok": True, "tags": ["a"], "extra": {"k": 1},
              "when": "2026-11-25T10:00:00Z", "nothing": None}  # fmt: skip
    schema = add_fields(client, table, values, declared)
    expected = {"id": ("INTEGER", "REQUIRED"), "name": ("STRING", "NULLABLE"),
                "country": ("STRING", "NULLABLE"), "score": ("FLOAT", "NULLABLE"),
                "n": ("INTEGER", "NULLABLE"), "ok": ("BOOLEAN", "NULLABLE"),
                "tags": ("STRING", "REPEATED"), "extra": ("JSON", "NULLABLE"),
                "when": ("TIMESTAMP", "NULLABLE")}  # fmt: skip
    assert _names(client, table) == expected
    assert {f.name: (f.type, f.mode) for f in schema.fields} == expected


@pytest.mark.integration
def test_changes_bigquery_cannot_make_name_the_field(emulated_table: tuple[Any, str]) -> None:
    client, table = emulated_table
    add_fields(client, table, {"country": "fr"})
    with pytest.raises(SchemaMismatch, match="country: the column is NULLABLE STRING"):
        add_fields(client, table, {"country": 5})
    required = Schema((Field("code", "STRING", "REQUIRED"),))
    with pytest.raises(SchemaMismatch, match="code: a new column cannot be REQUIRED"):
        add_fields(client, table, {"code": "x"}, required)
    assert "code" not in _names(client, table)


@pytest.mark.integration
def test_two_writers_adding_columns_at_once_both_succeed_on_the_emulator(
    bigquery_emulator: Any, emulated_table: tuple[Any, str]
) -> None:
    _, table = emulated_table
    _both_add(lambda: make_client(PROJECT, bigquery_emulator.endpoint), table)
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    # Both succeed; without the ETag check (ignored by the emulator) a patch may still undo a
    # column the other had verified, so only the shared column is certain here.
    assert "country" in _names(client, table)


def _both_add(make: Any, table: str) -> None:
    """Two threads add ``country`` and one column each at once; both must succeed."""
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def adder(own: str) -> None:
        client = make()
        barrier.wait()
        try:
            add_fields(client, table, {"country": "fr", own: 1})
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=adder, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []


class StandIn:
    """A table as BigQuery documents it, for both the REST client and the Storage Write one."""

    def __init__(self) -> None:
        self.schema: list[bigquery.SchemaField] = []
        self.etag = 0
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    # REST (google-cloud-bigquery Client)
    def create_dataset(self, *_: Any, **__: Any) -> None:
        pass

    def create_table(self, table: bigquery.Table, **_: Any) -> None:
        with self.lock:
            self.schema = self.schema or list(table.schema)

    def get_table(self, ref: Any, **_: Any) -> bigquery.Table:
        with self.lock:
            table = bigquery.Table(ref if isinstance(ref, str) else ref.reference, self.schema)
            table._properties["etag"] = str(self.etag)
            return copy.deepcopy(table)

    def update_table(self, table: bigquery.Table, fields: list[str], **_: Any) -> None:
        with self.lock:
            if table.etag != str(self.etag):
                raise exceptions.PreconditionFailed("Precondition check failed.")
            self.schema, self.etag = list(table.schema), self.etag + 1

    def close(self) -> None:
        pass

    # Storage Write (BigQueryWriteClient)
    def append_rows(self, requests: Any, **_: Any) -> list[types.AppendRowsResponse]:
        request = next(iter(requests))
        descriptor = request.proto_rows.writer_schema.proto_descriptor
        with self.lock:
            known = {field.name for field in self.schema}
        extra = [field.name for field in descriptor.field if field.name not in known]
        if extra:
            message = f"Input schema has more fields than BigQuery schema, extra fields: {extra}"
            error = status_pb2.Status(code=3, message=message)
            return [types.AppendRowsResponse(error=error)]
        file_proto = descriptor_pb2.FileDescriptorProto(name="r.proto", syntax="proto2")
        file_proto.message_type.append(descriptor)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file_proto)
        row_class = message_factory.GetMessageClass(pool.FindMessageTypeByName(descriptor.name))
        for data in request.proto_rows.rows.serialized_rows:
            row = row_class.FromString(data)
            self.rows.append(json_format.MessageToDict(row, preserving_proto_field_name=True))
        return [types.AppendRowsResponse(append_result={})]


def test_two_writers_adding_the_same_column_both_succeed_when_patches_check_the_etag() -> None:
    stand_in = StandIn()
    stand_in.create_table(bigquery.Table("p.d.t", [bigquery.SchemaField("id", "INTEGER")]))
    _both_add(lambda: stand_in, "p.d.t")
    assert {f.name for f in stand_in.schema} == {"id", "country", "a", "b"}


def test_new_fields_are_added_before_their_rows_and_their_values_land(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stand_in = StandIn()
    monkeypatch.setattr(storage_write, "make_client", lambda *_: stand_in)
    monkeypatch.setattr(storage_write, "make_write_client", lambda *_: stand_in)
    sink = make_sink(
        "bigquery://p-x/d.t?schema_update=add_fields&storage_endpoint=stand-in:1",
        SinkContext(pipeline="test_pipeline", schema=SCHEMA),
    )
    data = [{"id": 1}, {"id": 2, "country": "fr"}, {"id": 3, "country": "de", "score": 1.5},
            {"id": "x"}, {"id": 4, "score": "high"}]  # fmt: skip
    records = [
        Record(row, Message(json.dumps(row).encode(), {}, Origin("file", path="/in", line=i)))
        for i, row in enumerate(data)
    ]

    def check(dead_letters: list[dict[str, Any]]) -> None:
        by_line = {d["source"]["line"]: d for d in dead_letters}
        assert sorted(by_line) == [3, 4]
        assert {d["reason"] for d in dead_letters} == {"schema_mismatch"}
        assert by_line[3]["error_message"].startswith("id:")
        assert by_line[4]["error_message"].startswith("score:")

    counters = run_sink(records, sink, check)

    assert counters["written"] == 3
    assert [(f.name, f.field_type, f.mode) for f in stand_in.schema] == [
        ("id", "INTEGER", "REQUIRED"), ("name", "STRING", "NULLABLE"),
        ("country", "STRING", "NULLABLE"), ("score", "FLOAT", "NULLABLE")]  # fmt: skip
    landed = sorted(stand_in.rows, key=lambda r: r["id"])
    assert landed == [{"id": "1"}, {"id": "2", "country": "fr"},
                      {"id": "3", "country": "de", "score": 1.5}]  # fmt: skip
