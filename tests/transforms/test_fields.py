"""The check of the fields a pipeline's options name, on every record of a block."""

from __future__ import annotations

import json
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from transforms.aggregate.spec import AggregateSpec
from transforms.blocks import Block
from transforms.errors import RecordError
from transforms.fields import (
    CheckFields,
    FieldCheck,
    MissingField,
    RequiredField,
    WrongType,
    aggregate_fields,
)
from transforms.message import Message, Origin, Record

SPEC = AggregateSpec.from_dict(
    {
        "window": {"type": "tumbling", "size": "60s"},
        "group_by": ["path", "region"],
        "aggregates": {
            "hits": "count()",
            "errors": "count_if(status_code >= 500)",
            "bytes": "sum(size.bytes)",
            "slowest": "max(duration_ms)",
            "p50": "approx_quantile(duration_ms, 0.5)",
            "users": "approx_count_distinct(user_id)",
            "scaled": "sum(size.bytes * 2)",
        },
    }
)


def test_aggregate_fields_are_the_group_keys_and_bare_aggregated_fields() -> None:
    fields = {(f.path, f.kind, f.nested) for f in aggregate_fields(SPEC)}
    assert fields == {
        ("path", "key", False),
        ("region", "key", False),
        ("size.bytes", "number", True),
        ("duration_ms", "scalar", True),
        ("duration_ms", "number", True),
        ("user_id", "any", True),
    }


def test_a_spec_of_counts_alone_needs_only_its_group_keys() -> None:
    spec = AggregateSpec.from_dict(
        {"window": {"type": "tumbling", "size": 60}, "aggregates": {"n": "count()"}}
    )
    assert aggregate_fields(spec) == ()
    assert not FieldCheck(aggregate_fields(spec))


GOOD = {
    "path": "/a",
    "region": "eu",
    "size": {"bytes": 10},
    "duration_ms": 3.5,
    "user_id": "u1",
}


def _error(data: dict[str, Any]) -> RecordError | None:
    try:
        FieldCheck(aggregate_fields(SPEC))(data)
    except RecordError as exc:
        return exc
    return None


def test_a_good_record_passes() -> None:
    assert _error(GOOD) is None
    assert _error({**GOOD, "size": {"bytes": None}, "duration_ms": None}) is None  # null: no value
    assert _error({**GOOD, "region": 7, "duration_ms": 10**30}) is None
    # An aggregated field may be absent: the aggregate skips it, as SQL skips nulls.
    assert _error({"path": "/a", "region": "eu"}) is None
    assert _error({**GOOD, "size": "big"}) is None


@pytest.mark.parametrize(
    ("changes", "error", "named"),
    [
        ({"path": ...}, MissingField, "'path'"),
        ({"path": None}, MissingField, "'path'"),
        ({"region": {"a": 1}}, WrongType, "'region'"),
        ({"region": [1]}, WrongType, "'region'"),
        ({"size": {"bytes": "10"}}, WrongType, "'size.bytes'"),
        ({"size": {"bytes": True}}, WrongType, "'size.bytes'"),
        ({"duration_ms": "slow"}, WrongType, "'duration_ms'"),
        ({"duration_ms": [1.0]}, WrongType, "'duration_ms'"),
    ],
)
def test_a_missing_field_or_a_wrong_kind_is_named(
    changes: dict[str, Any], error: type[RecordError], named: str
) -> None:
    data = {**GOOD, **changes}
    data = {k: v for k, v in data.items() if v is not ...}
    found = _error(data)
    assert isinstance(found, error)
    assert named in str(found)
    assert found.reason == {MissingField: "missing_field", WrongType: "wrong_type"}[error]


def test_min_max_take_text_but_sums_do_not() -> None:
    assert _error({**GOOD, "duration_ms": "fast"}) is not None  # also a quantile: a number
    check = FieldCheck([RequiredField("grade", "scalar", "max(grade)", nested=True)])
    check({"grade": "B"})
    with pytest.raises(WrongType, match="'grade'"):
        check({"grade": {"letter": "B"}})


def test_a_join_key_may_be_missing_but_not_an_object() -> None:
    check = FieldCheck([RequiredField("customer_id", "join_key", "--profiles key")])
    check({})
    check({"customer_id": None})
    check({"customer_id": 42})
    with pytest.raises(WrongType, match="'customer_id'"):
        check({"customer_id": ["c1"]})


def test_group_keys_are_top_level_names_dots_included() -> None:
    check = FieldCheck([RequiredField("a.b", "key", "group key")])
    check({"a.b": "x"})
    with pytest.raises(MissingField, match="'a.b'"):
        check({"a": {"b": "x"}})


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        RequiredField("a", "text", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        RequiredField("", "key", "x")


def _message(data: dict[str, Any], line: int) -> Message:
    return Message(json.dumps(data).encode(), {}, Origin("file", path="/in.jsonl", line=line))


def _records() -> list[Record]:
    rows = [GOOD, {**GOOD, "path": None}, {**GOOD, "duration_ms": "x"}, {**GOOD, "path": "/b"}]
    return [Record(row, _message(row, line)) for line, row in enumerate(rows, 1)]


def _dead(errors: beam.PCollection) -> beam.PCollection:
    return errors | beam.Map(
        lambda d: (
            d["step"],
            d["reason"],
            d["source"]["line"],
            json.loads(d["payload_bytes"]),
            d["event_timestamp"],
        )
    )


def test_check_fields_passes_good_records_untouched_and_dead_letters_the_others() -> None:
    records = [record._replace(event_time=60.0 * i) for i, record in enumerate(_records())]
    blocks = [Block(records[:3]), Block(records[3:])]
    with beam.Pipeline() as p:
        passed, errors = (
            p | beam.Create(blocks) | CheckFields("pipe", FieldCheck(aggregate_fields(SPEC)))
        )
        assert_that(
            passed | beam.Map(lambda block: (type(block).__name__, list(block))),
            equal_to([("Block", [records[0]]), ("Block", [records[3]])]),
            label="good",
        )
        assert_that(
            _dead(errors),
            equal_to(
                [
                    ("fields", "missing_field", 2, records[1].data, "1970-01-01T00:01:00Z"),
                    ("fields", "wrong_type", 3, records[2].data, "1970-01-01T00:02:00Z"),
                ]
            ),
            label="dead",
        )
