"""The CDC shortcuts for the common shapes against the general paths, on the same inputs.

Each shortcut must give what its general path gives, or leave the input to it: key ids, canonical
keys, source times in milliseconds, the sequence check, Debezium Postgres sequences, declared key
columns, decimal position parts.
"""

from __future__ import annotations

from typing import Any

import pytest

from transforms.cdc.change import (
    canonical_key,
    check_sequence,
    is_canonical,
    json_key_id,
    key_id,
    sequence_key,
)
from transforms.cdc.debezium import _digit_pair, _postgres_sequence
from transforms.cdc.envelope import KeyRules, NoPosition, position_part, source_time
from transforms.errors import BadTimestamp
from transforms.event_time import format_timestamp, parse_timestamp

KEYS: list[dict[Any, Any]] = [
    {"id": 1004},
    {"id": -7},
    {"id": 10**30},
    {"id": "c-1"},
    {"email": 'a"b\\c\n\u00e9\U0001f600'},
    {"order_id": 5, "line": 2, "a": "x"},
    {"b": 1, "a": 1},
    {},
    {"id": True},
    {"id": 1.0},
    {"id": "1"},
    {"id": "007"},
    {"id": "-0"},
    {"id": 1.5},
    {"id": None},
    {"id": [1, 2]},
    {"id": {"nested": 1}},
    {1: 2},
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_key_id_writes_what_json_dumps_writes(key: dict[Any, Any]) -> None:
    table = "inventory.customers"
    assert _outcome(key_id, table, key) == _outcome(json_key_id, table, key)


def _outcome(function: Any, *args: Any) -> Any:
    """The result of ``function``, or the type and text of what it raises."""
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 - the failure is the outcome compared
        return type(exc), str(exc)


SEQUENCES: list[Any] = [
    (5, 12),
    (0,),
    (10**20 - 1, 3),
    (10**20,),
    (-1, 2),
    (1, True),
    (1.0, 2),
    ("3",),
    (),
]


@pytest.mark.parametrize("sequence", SEQUENCES, ids=repr)
def test_check_sequence_raises_what_sequence_key_raises(sequence: Any) -> None:
    expected = _outcome(sequence_key, sequence)
    outcome = _outcome(check_sequence, sequence)
    assert outcome == (None if isinstance(expected, str) else expected)


POSTGRES_SEQUENCES = [
    '["24023119","24023128"]',
    '["24023119", "24023128"]',
    '["0007","12"]',
    '["","12"]',
    '[null,"12"]',
    '["1",  "2"]',
    '["1","2","3"]',
    '["1", "2", "3"]',
    '["1"]',
    '["\u0661","2"]',
    '["12","3"4"]',
    '["16/B374D848","16/B374D850"]',
    '["1","2"] ',
    "[1,2]",
    "not json",
]


@pytest.mark.parametrize("sequence", POSTGRES_SEQUENCES)
def test_digit_pair_reads_what_the_json_reader_reads(sequence: str) -> None:
    pair = _digit_pair(sequence)
    if pair is not None:
        assert pair == _postgres_sequence(sequence)


def test_digit_pair_takes_the_common_shapes() -> None:
    assert _digit_pair('["24023119","24023128"]') == (24023119, 24023128)
    assert _digit_pair('["24023119", "24023128"]') == (24023119, 24023128)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("12", 12),
        ("0012", 12),
        (" 12", 12),
        ("12 ", 12),
        ("", 0),
        ("16/B3", 0x16 << 32 | 0xB3),
    ],
)
def test_position_part_of_text(value: str, expected: int) -> None:
    assert position_part(value, "LSN") == expected


@pytest.mark.parametrize("value", ["\u0661", "1a", "-1", "1.5"])
def test_position_part_refuses_other_text(value: str) -> None:
    with pytest.raises(NoPosition):
        position_part(value, "LSN")


RULES = KeyRules({"inventory.customers": ("id",), "inventory.orders": ("order_id", "line")})
KEY_CASES: list[tuple[str, Any, str | None]] = [
    ("inventory.customers", {"id": 1, "email": "a"}, None),
    ("inventory.customers", {"id": 0}, ""),
    ("inventory.customers", {"id": None, "email": "a"}, None),
    ("inventory.customers", {"email": "a"}, '{"id": 9}'),
    ("inventory.customers", {"id": 1}, '{"id": 9}'),
    ("inventory.customers", {}, None),
    ("inventory.customers", None, '{"schema": {}, "payload": {"id": 3}}'),
    ("inventory.orders", {"order_id": 1, "line": 2}, None),
    ("inventory.orders", {"order_id": 1, "line": None}, None),
    ("inventory.other", {"id": 1}, None),
    ("inventory.other", {"id": 1}, '{"id": 1}'),
]


@pytest.mark.parametrize(("table", "image", "message_key"), KEY_CASES, ids=repr)
def test_key_of_declared_columns_is_that_of_the_rules(
    table: str, image: Any, message_key: str | None
) -> None:
    assert _outcome(RULES.key, table, image, message_key) == _outcome(
        RULES.key_by_rules, table, image, message_key
    )


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_a_key_taken_as_canonical_is_its_canonical_form(key: dict[Any, Any]) -> None:
    if is_canonical(key):
        assert canonical_key(key) == key


def test_plain_keys_are_taken_as_canonical() -> None:
    assert is_canonical({"id": 1004}) and is_canonical({"order_id": 5, "line": 2, "a": "x"})
    assert not is_canonical({"id": "1"}) and not is_canonical({"id": 1.0})


MILLIS = [0, 999, 1000, 1764064800005, 1559033904863, 253402300799000, -1, -62135596800000]


@pytest.mark.parametrize("millis", MILLIS)
def test_source_time_of_whole_millis_is_exact(millis: int) -> None:
    text = source_time(millis, "ms")
    assert text == format_timestamp(parse_timestamp(str(millis), "ms")) or millis < 0
    whole, fraction = divmod(millis, 1000)
    assert text == format_timestamp(whole)[:-1] + (f".{fraction:03d}Z" if fraction else "Z")


@pytest.mark.parametrize("millis", [-62135596800001, 253402300799001, 10**30])
def test_source_time_out_of_range_is_refused_as_parse_timestamp_refuses_it(millis: int) -> None:
    with pytest.raises(BadTimestamp, match="out of range"):
        parse_timestamp(millis, "ms")
    with pytest.raises(BadTimestamp, match="out of range"):
        source_time(millis, "ms")
