"""CDC keys: one canonical form, key changes read as a delete and an upsert, declared columns.

The canonical rule (`transforms.cdc.change`): integral numbers and strings that are the decimal
text of an integer are that integer; booleans stay booleans; other strings and non-integral
numbers stay as they are; null is a missing key; a list, an object, NaN or an infinity is a bad
key.
"""

from __future__ import annotations

import json
import math
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.support import COLLECTED, Collect
from transforms.blocks import Batch, Unbatch
from transforms.cdc.apply import ApplyChanges
from transforms.cdc.change import Change, KeyValueError, canonical_key, key_id, key_text
from transforms.cdc.envelope import (
    ALL_TABLES,
    BadKey,
    KeyChange,
    KeyRules,
    NoKey,
    parse_key_columns,
)
from transforms.cdc.final_state import FinalState
from transforms.cdc.normalize import KEY_CHANGES, ChangeReader, NormalizeChanges
from transforms.message import Message, Origin, Record
from transforms.metrics import counter_totals

CUSTOMERS = "inventory.customers"
ORDERS = "inventory.orders"
PIPELINE = "cdc_replicate"


def debezium(
    op: str, lsn: int, before: Any = None, after: Any = None, table: str = "customers"
) -> dict[str, Any]:
    """A Debezium Postgres event value (schemas off) at LSN ``lsn``."""
    source = {"connector": "postgresql", "db": "shop", "schema": "inventory", "table": table,
              "lsn": lsn, "sequence": json.dumps([str(lsn - 1), str(lsn)]),
              "ts_ms": 1732528800000 + lsn}  # fmt: skip
    return {"before": before, "after": after, "source": source, "op": op}


def datastream(change_type: str, position: int, payload: dict[str, Any]) -> dict[str, Any]:
    """A Datastream MySQL event of ``inventory.customers``."""
    return {
        "source_timestamp": 1732528860000,
        "sort_keys": [1732528860000, "mysql-bin.000007", position],
        "source_metadata": {"table": "customers", "database": "inventory",
                            "primary_keys": ["id"], "change_type": change_type,
                            "is_deleted": change_type.endswith("DELETE")},
        "payload": payload,
    }  # fmt: skip


# --- the canonical form ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "text"),
    [([1, 1.0, "1", 1e0], '{"id":1}'),
     ([-7, -7.0, "-7"], '{"id":-7}'),
     ([0, 0.0, -0.0, "0"], '{"id":0}'),
     ([10**20, 1e20, "100000000000000000000"], '{"id":100000000000000000000}'),
     ([True], '{"id":true}'),
     ([False], '{"id":false}'),
     (["true"], '{"id":"true"}'),
     (["01"], '{"id":"01"}'),
     (["+1"], '{"id":"+1"}'),
     (["-0"], '{"id":"-0"}'),
     ([" 1"], '{"id":" 1"}'),
     (["1.0"], '{"id":"1.0"}'),
     ([1.5], '{"id":1.5}'),
     (["1.5"], '{"id":"1.5"}'),
     (["\u0661"], '{"id":"\\u0661"}'),  # an Arabic-Indic digit is text, not a number
     (["c-1"], '{"id":"c-1"}')],
)  # fmt: skip
def test_one_canonical_text_per_key(values: list[Any], text: str) -> None:
    assert {key_text({"id": value}) for value in values} == {text}
    assert {key_id(CUSTOMERS, {"id": value}) for value in values} == {f"{CUSTOMERS}|{text}"}


def test_booleans_numbers_and_their_texts_are_distinct_keys() -> None:
    texts = [key_text({"id": value}) for value in (True, 1, "true", False, 0, "false", 1.5, "1.5")]
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize(
    ("value", "missing"),
    [(None, True), ([1], False), ({"a": 1}, False), (math.nan, False), (math.inf, False),
     (-math.inf, False), (b"1", False)],
)  # fmt: skip
def test_values_that_cannot_be_keys(value: Any, missing: bool) -> None:
    with pytest.raises(KeyValueError) as raised:
        canonical_key({"id": value})
    assert raised.value.missing is missing
    assert "'id'" in str(raised.value)
    with pytest.raises(KeyValueError):
        key_text({"id": value})


def test_a_change_holds_its_key_in_canonical_form() -> None:
    change = Change(CUSTOMERS, {"id": "1", "line": 2.0}, "delete", None, (5,))
    assert change.key == {"id": 1, "line": 2}
    assert Change.from_dict(change.to_dict()) == change
    assert Change.from_dict({**change.to_dict(), "key": {"id": 1.0, "line": "2"}}) == change


# --- bad keys, read from envelopes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "error"),
    [({"id": [1], "email": "a"}, BadKey),
     ({"id": {"n": 1}, "email": "a"}, BadKey),
     ({"id": math.nan, "email": "a"}, BadKey),
     ({"id": None, "email": "a"}, NoKey),
     ({"email": "a"}, NoKey)],
)  # fmt: skip
def test_bad_and_missing_keys_have_their_reasons(after: dict[str, Any], error: type) -> None:
    reader = ChangeReader("debezium", KeyRules(parse_key_columns("id")))
    with pytest.raises(error) as raised:
        reader.read(debezium("c", 100, after=after))
    assert raised.value.reason == {BadKey: "cdc_bad_key", NoKey: "cdc_no_key"}[error]
    assert CUSTOMERS in str(raised.value)


@pytest.mark.parametrize(
    ("message_key", "error"),
    [('{"id": [1, 2]}', BadKey), ('{"id": null}', NoKey),
     ('{"schema": {}, "payload": {"id": {"a": 1}}}', BadKey)],
)  # fmt: skip
def test_bad_message_keys_have_their_reasons(message_key: str, error: type) -> None:
    with pytest.raises(error):
        ChangeReader("debezium").read(debezium("d", 100), message_key)


def test_message_keys_take_the_canonical_form() -> None:
    read = ChangeReader("debezium").read(debezium("d", 100), '{"id": "7"}')
    assert isinstance(read, Change) and read.key == {"id": 7}


# --- key changes -----------------------------------------------------------------------------


def test_an_update_of_the_primary_key_is_a_delete_of_the_old_key_and_an_upsert_of_the_new() -> None:
    before, after = {"id": 2, "email": "old@x"}, {"id": 3, "email": "new@x"}
    event = debezium("u", 200, before=before, after=after)
    declared = ChangeReader("debezium", KeyRules(parse_key_columns("id")))
    wrapped_key = '{"schema": {}, "payload": {"id": 3}}'
    readers = [(declared, None), (ChangeReader("debezium"), '{"id": 3}'),
               (ChangeReader("auto"), wrapped_key)]  # fmt: skip
    for reader, message_key in readers:
        for value in (event, {"schema": {}, "payload": event}):
            read = reader.read(value, message_key)
            assert isinstance(read, KeyChange)
            delete, upsert = read
            assert (delete.op, delete.key, delete.row) == ("delete", {"id": 2}, None)
            assert (upsert.op, upsert.key, upsert.row) == ("upsert", {"id": 3}, after)
            assert delete.sequence == upsert.sequence == (199, 200)
            assert delete.source_ts == upsert.source_ts and delete.table == CUSTOMERS


@pytest.mark.parametrize(
    "before",
    [None, {"id": 3, "email": "old"}, {"id": "3", "email": "old"}, {"id": 3.0},
     {"email": "old"}, {"id": None}],
    ids=["no before", "same key", "same key as text", "same key as float", "no key column",
         "null key column"],
)  # fmt: skip
def test_an_update_that_keeps_its_key_or_cannot_tell_is_one_upsert(before: Any) -> None:
    reader = ChangeReader("debezium", KeyRules(parse_key_columns("id")))
    read = reader.read(debezium("u", 200, before=before, after={"id": 3, "email": "new"}))
    assert isinstance(read, Change)
    assert (read.op, read.key) == ("upsert", {"id": 3})


def test_a_composite_key_change_and_a_bad_old_key() -> None:
    reader = ChangeReader("debezium", KeyRules(parse_key_columns(f"{CUSTOMERS}=tenant,id")))
    read = reader.read(
        debezium("u", 200, before={"tenant": "a", "id": 1}, after={"tenant": "b", "id": 1})
    )
    assert isinstance(read, KeyChange)
    assert [change.key for change in read] == [{"tenant": "a", "id": 1}, {"tenant": "b", "id": 1}]
    with pytest.raises(BadKey):
        reader.read(
            debezium("u", 201, before={"tenant": [], "id": 1}, after={"tenant": "b", "id": 1})
        )


def test_a_datastream_key_change_is_its_update_delete_and_update_insert() -> None:
    reader = ChangeReader("datastream")
    delete = reader.read(datastream("UPDATE-DELETE", 191, {"id": 2, "email": "old"}))
    upsert = reader.read(datastream("UPDATE-INSERT", 191, {"id": "3", "email": "new"}))
    assert isinstance(delete, Change) and isinstance(upsert, Change)
    assert (delete.op, delete.key) == ("delete", {"id": 2})
    assert (upsert.op, upsert.key) == ("upsert", {"id": 3})
    assert delete.sequence < upsert.sequence


# --- declared key columns --------------------------------------------------------------------


def test_a_bare_entry_is_every_tables_key_and_a_qualified_entry_wins() -> None:
    assert parse_key_columns("id") == {ALL_TABLES: ("id",)}
    assert parse_key_columns("*=id") == {ALL_TABLES: ("id",)}
    assert parse_key_columns(" tenant , id ") == {ALL_TABLES: ("tenant", "id")}
    declared = parse_key_columns(f"id; {ORDERS}=order_id,line")
    assert declared == {ALL_TABLES: ("id",), ORDERS: ("order_id", "line")}
    rules = KeyRules(declared)
    assert rules.declared(CUSTOMERS) == ("id",)
    assert rules.declared("public.anything") == ("id",)
    assert rules.declared(ORDERS) == ("order_id", "line")
    assert KeyRules(parse_key_columns(f"{ORDERS}=order_id")).declared(CUSTOMERS) is None


def test_a_default_applies_to_every_table_and_wins_over_the_message_key() -> None:
    reader = ChangeReader("debezium", KeyRules(parse_key_columns("id")))
    for table in ("customers", "orders", "products"):
        read = reader.read(debezium("c", 100, after={"id": "5", "sku": 1}, table=table),
                           '{"sku": 1}')  # fmt: skip
        assert isinstance(read, Change)
        assert (read.table, read.key) == (f"inventory.{table}", {"id": 5})


@pytest.mark.parametrize(
    ("spec", "message"),
    [("inventory.customers", "for one table write inventory.customers=COLUMN"),
     ("id;uid", "the key columns of every table are declared twice"),
     ("id;*=uid", "the key columns of every table are declared twice"),
     ("=id", "use table=column"),
     ("t=", "use table=column"),
     ("t=a,,b", "use table=column"),
     ("id,", "use table=column"),
     ("a=b=c", "use table=column"),
     ("t=a;t=b", "the key columns of table 't' are declared twice")],
)  # fmt: skip
def test_bad_key_column_forms_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        parse_key_columns(spec)


# --- in a pipeline ---------------------------------------------------------------------------


def _message(value: Any, line: int) -> Message:
    return Message(json.dumps(value).encode(), {}, Origin("file", path="/in.jsonl", line=line))


def _record(value: Any, line: int) -> Record:
    return Record(json.loads(json.dumps(value)), _message(value, line))


def test_normalize_splits_key_changes_and_dead_letters_bad_keys_with_their_bytes() -> None:
    values = [
        debezium("c", 100, after={"id": 2, "email": "a"}),
        debezium("u", 110, before={"id": 2, "email": "a"}, after={"id": 3, "email": "a"}),
        debezium("c", 120, after={"id": [4], "email": "b"}),
        debezium("c", 130, after={"id": None, "email": "c"}),
    ]
    records = [_record(value, line) for line, value in enumerate(values, 1)]
    pipeline = beam.Pipeline()
    changes, errors = (
        pipeline | beam.Create(records) | Batch() | NormalizeChanges(PIPELINE, "debezium", "id")
    )
    keyed = (
        changes
        | Unbatch()
        | beam.Map(lambda r: (r.data["op"], r.data["key"], r.origin.origin.line))
    )
    assert_that(keyed, equal_to([("upsert", {"id": 2}, 1), ("delete", {"id": 2}, 2),
                                 ("upsert", {"id": 3}, 2)]))  # fmt: skip
    errors | beam.ParDo(Collect("key errors"))
    result = pipeline.run()
    result.wait_until_finish()
    dead = sorted(COLLECTED.pop("key errors"), key=lambda d: d["source"]["line"])
    assert [(d["step"], d["reason"]) for d in dead] == [
        ("normalize", "cdc_bad_key"),
        ("normalize", "cdc_no_key"),
    ]
    assert [d["payload_bytes"] for d in dead] == [records[2].origin.payload,
                                                  records[3].origin.payload]  # fmt: skip
    assert counter_totals(result.metrics())[KEY_CHANGES] == 1


def test_one_row_per_canonical_key_through_apply_and_final_state() -> None:
    values = [
        debezium("c", 100, after={"id": 1, "v": "int"}),
        debezium("u", 110, after={"id": "1", "v": "text"}),
        debezium("u", 120, after={"id": 1.0, "v": "float"}),
        debezium("c", 130, after={"id": True, "v": "bool"}),
        debezium("c", 140, after={"id": 2, "v": "two"}),
        debezium("u", 150, before={"id": 2, "v": "two"}, after={"id": 3, "v": "three"}),
    ]
    records = [_record(value, line) for line, value in enumerate(values, 1)]
    pipeline = beam.Pipeline()
    changes, _ = (
        pipeline | beam.Create(records) | Batch() | NormalizeChanges(PIPELINE, "debezium", "id")
    )
    applied, _ = changes | ApplyChanges(PIPELINE)
    rows = (
        applied
        | FinalState()
        | Unbatch()
        | beam.Map(lambda r: (key_text(r.data["key"]), r.data["row"]["v"]))
    )
    assert_that(rows, equal_to([('{"id":1}', "float"), ('{"id":true}', "bool"),
                                ('{"id":3}', "three")]))  # fmt: skip
    pipeline.run().wait_until_finish()
