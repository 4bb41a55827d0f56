"""Tests of transforms.schema: loading, BigQuery round trip and record validation."""

from __future__ import annotations

import json

import pytest

from transforms.errors import RecordError, SchemaViolation
from transforms.schema import Field, Schema

BQ_FIELDS = [
    {"name": "event_id", "type": "STRING", "mode": "REQUIRED", "description": "the id"},
    {"name": "count", "type": "INT64"},
    {"name": "score", "type": "FLOAT64", "mode": "nullable"},
    {"name": "ok", "type": "BOOL"},
    {"name": "price", "type": "NUMERIC"},
    {"name": "ts", "type": "TIMESTAMP"},
    {"name": "day", "type": "DATE"},
    {"name": "blob", "type": "BYTES"},
    {"name": "doc", "type": "JSON"},
    {"name": "tags", "type": "STRING", "mode": "REPEATED"},
    {
        "name": "meta",
        "type": "STRUCT",
        "fields": [
            {"name": "source", "type": "STRING", "mode": "REQUIRED"},
            {
                "name": "items",
                "type": "RECORD",
                "mode": "REPEATED",
                "fields": [{"name": "qty", "type": "INTEGER"}],
            },
        ],
    },
]

JSON_SCHEMA = {
    "type": "object",
    "required": ["event_id", "ts", "maybe"],
    "properties": {
        "event_id": {"type": "string", "description": "the id"},
        "ts": {"type": "string", "format": "date-time"},
        "day": {"type": "string", "format": "date"},
        "clock": {"type": "string", "format": "time"},
        "blob": {"type": "string", "contentEncoding": "base64"},
        "count": {"type": "integer"},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
        "maybe": {"type": ["integer", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "free": {"type": "object"},
        "meta": {
            "type": "object",
            "required": ["source"],
            "properties": {"source": {"type": "string"}, "n": {"type": "integer"}},
        },
        "lines": {
            "type": "array",
            "items": {"type": "object", "properties": {"sku": {"type": "string"}}},
        },
    },
}


def _valid_record() -> dict:
    return {
        "event_id": "e1",
        "count": 3,
        "score": 1.5,
        "ok": True,
        "price": "12.30",
        "ts": "2026-11-25T10:00:00Z",
        "day": "2026-11-25",
        "blob": "aGVsbG8=",
        "doc": {"any": ["thing", 1]},
        "tags": ["a", "b"],
        "meta": {"source": "web", "items": [{"qty": 1}, {"qty": 2}]},
    }


@pytest.fixture
def schema() -> Schema:
    return Schema.from_bigquery(BQ_FIELDS)


# --- loading -------------------------------------------------------------------------------


def test_bigquery_dict_loading_normalizes_aliases_and_modes(schema: Schema) -> None:
    assert schema.names == tuple(f["name"] for f in BQ_FIELDS)
    assert schema.get("count").type == "INTEGER"
    assert schema.get("score").type == "FLOAT"
    assert schema.get("score").mode == "NULLABLE"
    assert schema.get("ok").type == "BOOLEAN"
    assert schema.get("meta").type == "RECORD"
    assert schema.get("event_id").mode == "REQUIRED"
    assert schema.get("event_id").description == "the id"
    assert schema.get("tags").mode == "REPEATED"
    assert schema.get("nope") is None
    assert "ts" in schema and "nope" not in schema
    items = schema.get("meta").fields[1]
    assert (items.name, items.type, items.mode) == ("items", "RECORD", "REPEATED")


@pytest.mark.parametrize("wrap", [False, True], ids=["list", "fields-object"])
def test_load_bigquery_file(tmp_path, wrap: bool) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"fields": BQ_FIELDS} if wrap else BQ_FIELDS), encoding="utf-8")
    assert Schema.load(path) == Schema.from_bigquery(BQ_FIELDS)
    assert Schema.load(str(path)) == Schema.from_bigquery(BQ_FIELDS)


def test_load_json_schema_file(tmp_path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(JSON_SCHEMA), encoding="utf-8")
    assert Schema.load(path) == Schema.from_json_schema(JSON_SCHEMA)


def test_json_schema_mapping() -> None:
    schema = Schema.from_json_schema(JSON_SCHEMA)
    kinds = {f.name: (f.type, f.mode) for f in schema.fields}
    assert kinds == {
        "event_id": ("STRING", "REQUIRED"),
        "ts": ("TIMESTAMP", "REQUIRED"),
        "day": ("DATE", "NULLABLE"),
        "clock": ("TIME", "NULLABLE"),
        "blob": ("BYTES", "NULLABLE"),
        "count": ("INTEGER", "NULLABLE"),
        "score": ("FLOAT", "NULLABLE"),
        "ok": ("BOOLEAN", "NULLABLE"),
        # required but nullable -> NULLABLE
        "maybe": ("INTEGER", "NULLABLE"),
        "tags": ("STRING", "REPEATED"),
        "free": ("JSON", "NULLABLE"),
        "meta": ("RECORD", "NULLABLE"),
        "lines": ("RECORD", "REPEATED"),
    }
    assert schema.get("event_id").description == "the id"
    meta = {f.name: (f.type, f.mode) for f in schema.get("meta").fields}
    assert meta == {"source": ("STRING", "REQUIRED"), "n": ("INTEGER", "NULLABLE")}
    assert [f.name for f in schema.get("lines").fields] == ["sku"]


def test_json_schema_default_type_is_string() -> None:
    schema = Schema.from_json_schema({"properties": {"a": {}}})
    assert schema.get("a").type == "STRING"


def test_to_bigquery_round_trip(schema: Schema) -> None:
    exported = schema.to_bigquery()
    assert Schema.from_bigquery(exported) == schema
    # The export is plain JSON and normalized.
    again = json.loads(json.dumps(exported))
    assert Schema.from_bigquery(again).to_bigquery() == exported
    by_name = {f["name"]: f for f in exported}
    assert by_name["count"] == {"name": "count", "type": "INTEGER", "mode": "NULLABLE"}
    assert by_name["event_id"]["description"] == "the id"
    assert by_name["meta"]["fields"][1]["fields"] == [
        {"name": "qty", "type": "INTEGER", "mode": "NULLABLE"}
    ]


def test_json_schema_to_bigquery_round_trip() -> None:
    schema = Schema.from_json_schema(JSON_SCHEMA)
    assert Schema.from_bigquery(schema.to_bigquery()) == schema


# --- invalid definitions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ([{"name": "a", "type": "VARCHAR"}], "unknown type"),
        ([{"name": "a", "type": "STRING", "mode": "OPTIONAL"}], "unknown mode"),
        ([{"name": "", "type": "STRING"}], "needs a name"),
        ([{"name": "a"}], "'name' and 'type'"),
        ([{"type": "STRING"}], "'name' and 'type'"),
        ([{"name": "a", "type": "RECORD"}], "RECORD"),
        ([{"name": "a", "type": "STRING", "fields": [{"name": "b", "type": "STRING"}]}], "RECORD"),
        ([{"name": "a", "type": "STRING"}, {"name": "a", "type": "INTEGER"}], "more than once"),
        ([], "at least one field"),
        (
            [{"name": "r", "type": "RECORD", "fields": [{"name": "x", "type": "NOPE"}]}],
            "unknown type",
        ),
    ],
)
def test_invalid_bigquery_definitions(fields: list, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Schema.from_bigquery(fields)


def test_unknown_type_message_names_field_and_alternatives() -> None:
    with pytest.raises(ValueError) as info:
        Field("price", "MONEY")
    text = str(info.value)
    assert "price" in text and "MONEY" in text and "STRING" in text


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ({"type": "object"}, "properties"),
        ({"properties": {"a": {"type": ["string", "integer"]}}}, "one type"),
        ({"properties": {"a": {"type": ["null"]}}}, "one type"),
        ({"properties": {"a": {"type": "tuple"}}}, "unsupported type"),
        ({"properties": {}}, "at least one field"),
    ],
)
def test_invalid_json_schema_definitions(document: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Schema.from_json_schema(document)


def test_load_errors(tmp_path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ValueError, match="cannot read schema file"):
        Schema.load(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        Schema.load(broken)
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"type": "object"}), encoding="utf-8")
    with pytest.raises(ValueError, match="expected a BigQuery schema"):
        Schema.load(odd)
    scalar = tmp_path / "scalar.json"
    scalar.write_text("42", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a BigQuery schema"):
        Schema.load(scalar)


@pytest.mark.parametrize(
    "fields",
    [[{"name": "a", "type": 5}], [{"name": "a", "type": "STRING", "mode": None}]],
    ids=["int-type", "null-mode"],
)
def test_non_string_type_or_mode_raises_value_error(fields: list) -> None:
    with pytest.raises(ValueError, match="'a'"):
        Schema.from_bigquery(fields)


# --- validation ----------------------------------------------------------------------------


def test_valid_record_passes(schema: Schema) -> None:
    record = _valid_record()
    expected = json.loads(json.dumps(record))
    assert schema.validator()(record) == expected


def test_missing_nullable_fields_are_fine(schema: Schema) -> None:
    assert schema.validator()({"event_id": "x"}) == {"event_id": "x"}
    record = {"event_id": "x", "count": None, "tags": None, "meta": None}
    assert schema.validator()(dict(record)) == record


@pytest.mark.parametrize("value", [None, "missing"])
def test_required_field(schema: Schema, value) -> None:
    record = _valid_record()
    if value == "missing":
        del record["event_id"]
    else:
        record["event_id"] = value
    with pytest.raises(SchemaViolation, match="'event_id' is required"):
        schema.validator()(record)


def test_nested_required_field(schema: Schema) -> None:
    record = _valid_record()
    del record["meta"]["source"]
    with pytest.raises(SchemaViolation, match=r"'meta\.source' is required"):
        schema.validator()(record)


GOOD = {
    "STRING": ["", "x", "ünï"],
    "BYTES": ["aGVsbG8="],
    "INTEGER": [0, -1, 2**63 - 1, -(2**63)],
    "FLOAT": [0, 1.5, -3, 1e300],
    "NUMERIC": [1, 2.5, "3.25", "-7"],
    "BOOLEAN": [True, False],
    "TIMESTAMP": ["2026-11-25T10:00:00Z", "2026-11-25T10:00:00+02:00", 1_700_000_000, "1.7e9"],
    "DATE": ["2026-11-25"],
    "TIME": ["10:00:00"],
    "DATETIME": ["2026-11-25T10:00:00"],
    "GEOGRAPHY": ["POINT(1 2)"],
    "JSON": [{"a": 1}, [1, 2], "s", 3, True],
}
BAD = {
    "STRING": [1, 1.5, True, [], {}],
    "BYTES": [b"raw", 1],
    "INTEGER": [1.0, 1.5, "1", True, False, 2**63, -(2**63) - 1, [], {}],
    "FLOAT": ["1.5", True, False, [], {}],
    "NUMERIC": ["abc", "", True, [], {}],
    "BOOLEAN": [1, 0, "true", "yes", []],
    "TIMESTAMP": ["yesterday", True, [], {}, "2026-13-45T00:00:00Z"],
    "DATE": ["2026-02-30", "25.11.2026", 20261125, True],
    "TIME": [1000],
    "DATETIME": [1000],
    "GEOGRAPHY": [1],
}


@pytest.mark.parametrize(
    ("kind", "value"), [(k, v) for k, values in GOOD.items() for v in values], ids=repr
)
def test_type_accepts(kind: str, value) -> None:
    check = Schema((Field("v", kind),)).validator()
    assert check({"v": value}) == {"v": value}


@pytest.mark.parametrize(
    ("kind", "value"), [(k, v) for k, values in BAD.items() for v in values], ids=repr
)
def test_type_rejects(kind: str, value) -> None:
    check = Schema((Field("v", kind),)).validator()
    with pytest.raises(SchemaViolation, match="field 'v': expected") as info:
        check({"v": value})
    assert info.value.reason == "schema"
    assert isinstance(info.value, RecordError)


def test_bool_is_not_an_integer_or_float() -> None:
    for kind in ("INTEGER", "FLOAT", "NUMERIC"):
        check = Schema((Field("v", kind),)).validator()
        with pytest.raises(SchemaViolation):
            check({"v": True})


def test_int64_bounds() -> None:
    check = Schema((Field("v", "INTEGER"),)).validator()
    check({"v": 2**63 - 1})
    check({"v": -(2**63)})
    with pytest.raises(SchemaViolation, match="64-bit"):
        check({"v": 2**63})
    with pytest.raises(SchemaViolation, match="64-bit"):
        check({"v": -(2**63) - 1})


def test_repeated_checks_each_item_with_its_index(schema: Schema) -> None:
    record = _valid_record()
    record["tags"] = ["a", 2, "c"]
    with pytest.raises(SchemaViolation, match=r"'tags\[1\]'"):
        schema.validator()(record)
    record = _valid_record()
    record["tags"] = "a"
    with pytest.raises(SchemaViolation, match="an array"):
        schema.validator()(record)


def test_nested_repeated_record_paths(schema: Schema) -> None:
    record = _valid_record()
    record["meta"]["items"][1]["qty"] = "two"
    with pytest.raises(SchemaViolation, match=r"'meta\.items\[1\]\.qty'"):
        schema.validator()(record)
    record = _valid_record()
    record["meta"]["items"] = [{"qty": 1}, "nope"]
    with pytest.raises(SchemaViolation, match=r"'meta\.items\[1\]': expected an object"):
        schema.validator()(record)
    record = _valid_record()
    record["meta"] = ["not", "an", "object"]
    with pytest.raises(SchemaViolation, match="'meta': expected an object"):
        schema.validator()(record)


def test_long_values_are_shortened_in_messages() -> None:
    check = Schema((Field("v", "INTEGER"),)).validator()
    with pytest.raises(SchemaViolation) as info:
        check({"v": "x" * 10_000})
    assert len(str(info.value)) < 200


# --- unknown fields ------------------------------------------------------------------------


def test_unknown_fields_reject_by_default(schema: Schema) -> None:
    record = {**_valid_record(), "zz_extra": 1, "aa_extra": 2}
    with pytest.raises(SchemaViolation, match="not in the schema") as info:
        schema.validator()(record)
    assert "'aa_extra'" in str(info.value) and "'zz_extra'" in str(info.value)
    with pytest.raises(SchemaViolation):
        schema.validator("reject")(record)


def test_unknown_nested_fields_reject_with_path(schema: Schema) -> None:
    record = _valid_record()
    record["meta"]["surprise"] = 1
    with pytest.raises(SchemaViolation, match=r"'meta\.surprise'"):
        schema.validator()(record)


def test_unknown_fields_drop(schema: Schema) -> None:
    record = _valid_record()
    record["extra"] = 1
    record["meta"]["extra"] = 2
    out = schema.validator("drop")(record)
    assert out == _valid_record()


def test_unknown_fields_keep(schema: Schema) -> None:
    record = _valid_record()
    record["extra"] = 1
    record["meta"]["extra"] = 2
    expected = json.loads(json.dumps(record))
    assert schema.validator("keep")(record) == expected


def test_unknown_fields_still_type_checked_declared(schema: Schema) -> None:
    record = {**_valid_record(), "extra": 1, "count": "3"}
    for mode in ("drop", "keep"):
        with pytest.raises(SchemaViolation, match="'count'"):
            schema.validator(mode)(dict(record))


def test_fields_the_caller_checked_are_declared_but_not_checked_again(schema: Schema) -> None:
    validate = schema.validator("reject", checked=frozenset({"ts"}))
    # The caller vouches for ts: its value is not looked at again...
    assert validate({**_valid_record(), "ts": "not checked here"})["ts"] == "not checked here"
    # ... every other field still is, and ts still counts as declared.
    with pytest.raises(SchemaViolation, match="'count'"):
        validate({**_valid_record(), "count": "3"})
    with pytest.raises(SchemaViolation, match="'extra'"):
        validate({**_valid_record(), "extra": 1})
    assert (
        schema.validator("drop", checked=frozenset({"ts"}))({**_valid_record(), "extra": 1})
        == _valid_record()
    )
