"""NormalizeChanges: every fixture of tests/fixtures/cdc against a change written by hand.

Each fixture is one Kafka record, ``{"key": <message key or null>, "value": <event or null>}``:
Debezium 2.x Postgres and MySQL values from the JSON converter (``*_schemas``: with
``schemas.enable``, key and value wrapped in ``{"schema", "payload"}``), and Datastream JSON
events (no key). The expected changes below are read off the fixtures by hand: tables are
``schema.table`` (Postgres) or ``db.table`` (MySQL), Postgres sequences are the two integers of
``source.sequence``, MySQL ones (binlog file number, pos, row), Datastream ones the ``sort_keys``
with the LSN ``16/B374D848`` as ``0x16 * 2**32 + 0xB374D848``, plus 0 for ``UPDATE-DELETE``
and 1 otherwise; ``source_ts`` is ``source.ts_ms`` or ``source_timestamp`` in UTC.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest

from tests.support import COLLECTED, Collect
from tests.transforms.cdc.test_apply import parsed_blocks
from transforms.blocks import Unbatch
from transforms.cdc.change import Change
from transforms.cdc.debezium import is_tombstone
from transforms.cdc.envelope import (
    BadChange,
    Dropped,
    KeyRules,
    NoKey,
    NoPosition,
    UnknownFormat,
    UnknownOp,
    parse_key_columns,
    position_part,
)
from transforms.cdc.normalize import ChangeReader, NormalizeChanges
from transforms.message import Message, Origin
from transforms.metrics import counter_totals

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cdc"
CUSTOMERS = "inventory.customers"
ANNE = {"id": 1005, "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org"}
SALLY = {"id": 1001, "first_name": "Sally", "last_name": "Thomas",
         "email": "sally.thomas@acme.com"}  # fmt: skip
LINE = {"order_id": 77, "line": 1, "sku": "X-1", "qty": 2}
LSN_D848 = 0x16 * 2**32 + 0xB374D848
LSN_D9A0 = 0x16 * 2**32 + 0xB374D9A0

EXPECTED: dict[str, Change | Dropped] = {
    "debezium_postgres_create": Change(
        CUSTOMERS, {"id": 1005}, "upsert", ANNE, (24023119, 24023128), "2024-11-25T10:00:00.123Z"
    ),
    "debezium_postgres_update_schemas": Change(
        CUSTOMERS,
        {"id": 1005},
        "upsert",
        {**ANNE, "first_name": "Anne Marie"},
        (24023200, 24023264),
        "2024-11-25T10:01:00Z",
    ),  # fmt: skip
    "debezium_postgres_delete": Change(
        CUSTOMERS, {"id": 1005}, "delete", None, (24023300, 24023344), "2024-11-25T10:02:00Z"
    ),
    "debezium_postgres_snapshot_read": Change(
        CUSTOMERS, {"id": 1001}, "upsert", SALLY, (0, 23979776), "2024-11-25T09:58:20Z"
    ),
    "debezium_postgres_truncate": Change(
        CUSTOMERS, {}, "truncate", None, (24023400, 24023456), "2024-11-25T10:03:00Z"
    ),
    "debezium_postgres_message": Dropped("cdc_message"),
    "debezium_mysql_create_schemas": Change(
        CUSTOMERS,
        {"id": 1004},
        "upsert",
        {**ANNE, "id": 1004},
        (3, 154, 0),
        "2024-11-25T10:00:00Z",
    ),  # fmt: skip
    "debezium_mysql_update": Change(
        CUSTOMERS,
        {"id": 1004},
        "upsert",
        {**ANNE, "id": 1004, "first_name": "Anne Marie"},
        (3, 484, 1),
        "2024-11-25T10:01:00Z",
    ),  # fmt: skip
    "debezium_mysql_delete": Change(
        CUSTOMERS, {"id": 1004}, "delete", None, (4, 157, 0), "2024-11-25T10:02:00Z"
    ),
    "debezium_mysql_snapshot_read": Change(
        CUSTOMERS, {"id": 1001}, "upsert", SALLY, (3, 154, 0), "2024-11-25T09:58:20Z"
    ),
    "debezium_mysql_truncate": Change(
        CUSTOMERS, {}, "truncate", None, (4, 3075, 0), "2024-11-25T10:03:00Z"
    ),
    "datastream_mysql_insert": Change(
        CUSTOMERS,
        {"id": 1001},
        "upsert",
        SALLY,
        (1732528800000, 7, 191435, 1),
        "2024-11-25T10:00:00Z",
    ),  # fmt: skip
    "datastream_mysql_update_delete": Change(
        CUSTOMERS,
        {"id": 1001},
        "delete",
        None,
        (1732528860000, 7, 192011, 0),
        "2024-11-25T10:01:00Z",
    ),  # fmt: skip
    "datastream_mysql_update_insert": Change(
        CUSTOMERS,
        {"id": 1001},
        "upsert",
        {**SALLY, "email": "sally@acme.com"},
        (1732528860000, 7, 192011, 1),
        "2024-11-25T10:01:00Z",
    ),  # fmt: skip
    "datastream_mysql_backfill": Change(
        CUSTOMERS,
        {"id": 1002},
        "upsert",
        {"id": 1002, "first_name": "George", "last_name": "Bailey", "email": "gbailey@foobar.com"},
        (1732528700000, 0, 0, 1),
        "2024-11-25T09:58:20Z",
    ),  # fmt: skip
    "datastream_postgres_insert": Change(
        "public.order_lines",
        {"order_id": 77, "line": 1},
        "upsert",
        LINE,
        (1732528800000, LSN_D848, 1),
        "2024-11-25T10:00:00Z",
    ),  # fmt: skip
    "datastream_postgres_delete": Change(
        "public.order_lines",
        {"order_id": 77, "line": 1},
        "delete",
        None,
        (1732528860000, LSN_D9A0, 1),
        "2024-11-25T10:01:00Z",
    ),  # fmt: skip
}


def load(name: str) -> tuple[str | None, Any]:
    """Returns a fixture's message key (as the Kafka source gives it: text) and its value."""
    document = json.loads((FIXTURES / f"{name}.json").read_text())
    key = document["key"]
    return (None if key is None else json.dumps(key)), document["value"]


def test_every_fixture_is_expected() -> None:
    names = {path.stem for path in FIXTURES.glob("*.json")}
    assert names == set(EXPECTED) | {"debezium_postgres_tombstone"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_normalizes_to_the_change_written_by_hand(name: str) -> None:
    key, value = load(name)
    fmt = name.split("_")[0]
    assert ChangeReader(fmt).read(value, key) == EXPECTED[name]
    assert ChangeReader("auto").read(value, key) == EXPECTED[name]


def test_an_update_split_by_datastream_orders_the_old_row_before_the_new() -> None:
    deleted = EXPECTED["datastream_mysql_update_delete"]
    inserted = EXPECTED["datastream_mysql_update_insert"]
    assert isinstance(deleted, Change) and isinstance(inserted, Change)
    assert deleted.sequence < inserted.sequence


def test_a_tombstone_is_a_null_value() -> None:
    key, value = load("debezium_postgres_tombstone")
    assert value is None and key == '{"id": 1005}'
    for payload in (b"", b"  ", b"null", b"null\r"):
        assert is_tombstone(payload)
    assert not is_tombstone(b"{}")
    for payload in (
        b'{"schema": {"type": "struct"}, "payload": null}',
        b'{"payload":null,"schema":null}\n',
        b'{"schema":{},"payload" : null } ',
    ):
        assert is_tombstone(payload), payload  # fmt: skip
    for payload in (
        b'{"payload": null}',
        b'{"schema": 1, "payload": null, "x": 1}',
        b'{"schema": {}, "payload": {"op": "c"}}',
        b'{"a": "payload", "b": null}',
        b'{"schema": {}, "payload": null',
    ):
        assert not is_tombstone(payload), payload  # fmt: skip
    wrapped_tombstone = {"schema": None, "payload": None}
    assert ChangeReader("debezium").read(wrapped_tombstone) == Dropped("tombstone")


def test_the_other_format_is_refused() -> None:
    _, debezium = load("debezium_postgres_create")
    _, datastream = load("datastream_mysql_insert")
    with pytest.raises(UnknownFormat):
        ChangeReader("datastream").read(debezium, '{"id": 1005}')
    with pytest.raises(UnknownFormat):
        ChangeReader("debezium").read(datastream)
    with pytest.raises(UnknownFormat):
        ChangeReader("auto").read({"id": 1, "name": "not a change"})


def test_declared_key_columns_win_over_the_message_key() -> None:
    key, value = load("debezium_mysql_update")
    reader = ChangeReader("debezium", KeyRules(parse_key_columns(f"{CUSTOMERS}=last_name,id")))
    change = reader.read(value, key)
    assert isinstance(change, Change)
    assert change.key == {"last_name": "Kretchmar", "id": 1004}


def test_declared_key_of_a_delete_comes_from_before_or_the_message_key() -> None:
    key, value = load("debezium_postgres_delete")  # before has only the key column set
    rules = KeyRules(parse_key_columns(f"{CUSTOMERS}=id"))
    assert ChangeReader("debezium", rules).read(value, None) == EXPECTED["debezium_postgres_delete"]
    no_before = {**value, "before": None}
    assert (
        ChangeReader("debezium", rules).read(no_before, key) == EXPECTED["debezium_postgres_delete"]
    )
    with pytest.raises(NoKey, match="'id'"):
        ChangeReader("debezium", rules).read(no_before, None)


def test_no_key_without_message_key_or_declaration() -> None:
    _, value = load("debezium_postgres_create")
    with pytest.raises(NoKey) as raised:
        ChangeReader("debezium").read(value, None)
    assert raised.value.reason == "cdc_no_key"
    assert "--key_columns=inventory.customers=id" in str(raised.value)


def test_unknown_op_and_missing_position_are_errors_with_reasons() -> None:
    key, value = load("debezium_postgres_create")
    with pytest.raises(UnknownOp) as unknown:
        ChangeReader().read({**value, "op": "x"}, key)
    assert unknown.value.reason == "cdc_unknown_op"
    source = {k: v for k, v in value["source"].items() if k not in ("sequence", "lsn")}
    with pytest.raises(NoPosition) as no_position:
        ChangeReader().read({**value, "source": source}, key)
    assert no_position.value.reason == "cdc_no_position"
    _, event = load("datastream_mysql_insert")
    with pytest.raises(UnknownOp):
        ChangeReader().read({**event, "source_metadata": {**event["source_metadata"],
                                                          "change_type": "MERGE"}})  # fmt: skip


@pytest.mark.parametrize(
    ("op", "side", "row", "said"),
    [("c", "after", None, "missing"), ("u", "after", [1], "JSON list"),
     ("d", "before", "x", "JSON str")],
)  # fmt: skip
def test_a_row_that_is_not_an_object_is_named(op: str, side: str, row: Any, said: str) -> None:
    key, value = load("debezium_postgres_create")
    with pytest.raises(BadChange, match=f"op '{op}': its row '{side}' is {said}, not an object"):
        ChangeReader().read({**value, "op": op, "before": None, "after": None, side: row}, key)


@pytest.mark.parametrize("deleted", ["yes", 1, "true", [True]])
def test_datastream_is_deleted_must_be_a_boolean(deleted: Any) -> None:
    _, event = load("datastream_mysql_insert")
    metadata = {**event["source_metadata"], "is_deleted": deleted}
    with pytest.raises(BadChange, match="is_deleted"):
        ChangeReader().read({**event, "source_metadata": metadata})


@pytest.mark.parametrize(("field", "value"), [("table", 5), ("schema", ["s"]), ("table", True)])
def test_a_table_name_that_is_not_text_is_a_bad_change(field: str, value: Any) -> None:
    key, event = load("debezium_postgres_create")
    source = {**event["source"], field: value}
    with pytest.raises(BadChange, match="name .* is not text"):
        ChangeReader().read({**event, "source": source}, key)


def test_postgres_without_sequence_falls_back_to_the_lsn() -> None:
    key, value = load("debezium_postgres_create")
    source = {k: v for k, v in value["source"].items() if k != "sequence"}
    change = ChangeReader().read({**value, "source": source}, key)
    assert isinstance(change, Change) and change.sequence == (24023128,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (42, 42), ("", 0), ("0042", 42), ("mysql-bin.000003", 3), ("0/16B3748", 0x16B3748),
     ("16/B374D848", 0x16 * 2**32 + 0xB374D848)],
)  # fmt: skip
def test_position_parts(value: Any, expected: int) -> None:
    assert position_part(value, "part") == expected


@pytest.mark.parametrize("value", [-1, 1.5, True, None, "abc", "1.5", " 0x0000a0.0001 "])
def test_position_parts_that_are_not_positions(value: Any) -> None:
    with pytest.raises(NoPosition):
        position_part(value, "part")


def test_key_columns_syntax() -> None:
    assert parse_key_columns(" inventory.customers=id ; inventory.orders = order_id, line;") == {
        "inventory.customers": ("id",),
        "inventory.orders": ("order_id", "line"),
    }
    assert parse_key_columns("") == {}
    for bad in ("inventory.customers", "=id", "t=", "t=a,,b", "t=a;t=b"):
        with pytest.raises(ValueError):
            parse_key_columns(bad)
    for other, hint in [("s.t:id", "s.t=id"), ("s.t: a,b", "s.t=a,b"), ("s.t id", "s.t=id"),
                        ("s.t", "s.t=COLUMN[,COLUMN...]")]:  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(f"for one table write {hint}")):
            parse_key_columns(other)


def _collect(tag: str) -> beam.ParDo:
    return beam.ParDo(Collect(tag))


def test_normalize_changes_in_a_pipeline_dead_letters_with_reasons_and_counts_drops() -> None:
    names = ["debezium_postgres_create", "debezium_postgres_update_schemas",
             "debezium_postgres_delete", "debezium_postgres_tombstone",
             "debezium_postgres_message", "debezium_postgres_truncate"]  # fmt: skip
    messages = []
    for offset, name in enumerate(names):
        key, value = load(name)
        payload = b"" if value is None else json.dumps(value).encode()
        messages.append(Message(payload, {}, Origin("kafka", topic="t", partition=0,
                                                    offset=offset, key=key)))  # fmt: skip
    _, create = load("debezium_postgres_create")
    bad = [({**create, "op": "x"}, '{"id": 1}'), (create, None), ({"hello": "world"}, None)]
    for offset, (value, key) in enumerate(bad, start=len(names)):
        messages.append(
            Message(json.dumps(value).encode(), {}, Origin("kafka", offset=offset, key=key))
        )

    pipeline = beam.Pipeline()
    records, parse_errors = parsed_blocks(pipeline | beam.Create(messages))
    changes, errors = records | NormalizeChanges("cdc_test", "debezium")
    _ = changes | Unbatch() | "Changes" >> _collect("changes")
    _ = (parse_errors, errors) | beam.Flatten() | "Errors" >> _collect("errors")
    result = pipeline.run()
    result.wait_until_finish()

    got = COLLECTED.pop("changes")
    assert sorted((r.data["op"], r.data["sequence"]) for r in got) == [
        ("delete", [24023300, 24023344]), ("truncate", [24023400, 24023456]),
        ("upsert", [24023119, 24023128]), ("upsert", [24023200, 24023264]),
    ]  # fmt: skip
    assert all(r.origin is not None and r.origin.origin.system == "kafka" for r in got)
    dead = COLLECTED.pop("errors")
    assert sorted((d["step"], d["reason"], d["source"]["offset"]) for d in dead) == [
        ("normalize", "cdc_no_key", 7), ("normalize", "cdc_unknown_format", 8),
        ("normalize", "cdc_unknown_op", 6),
    ]  # fmt: skip
    assert all(d["payload_bytes"] == messages[d["source"]["offset"]].payload for d in dead)
    counters = counter_totals(result.metrics())
    assert counters["dropped.tombstone"] == 1
    assert counters["dropped.cdc_message"] == 1
    assert counters["dropped"] == 2
