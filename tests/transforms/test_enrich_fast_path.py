"""The side input join's fast path against the plain one, on the same input.

The plain path renders every key with `reference_key` (the template's own `render`) and settles
every record through `Settler.outputs`; the fast path renders keys with `key_function` and
merges a found row at once. Both must give the same outputs for every record, table, policy and
merge.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from transforms.enrich import EnrichSettings, Settler, key_function, reference_key
from transforms.enrich_side_input import Table, _JoinFn
from transforms.io.redis import KeyTemplate
from transforms.message import Message, Origin, Record

TEMPLATES = ["{id}", "customer:{id}", "{id}:x", "{id}:{region}", "{region}{id}"]


class Text(str):
    """A str subclass, as some decoders produce: rendered as its text."""


VALUES: list[Any] = [
    "c1", "", "007", Text("c1"), 7, -3, 10**30, 2.5, 1e300, math.nan, math.inf, 0.0, True,
    False, None, {"a": [1, "x"]}, [1, 2], b"hi", "ü",
]  # fmt: skip


def outcome(function: Any, *args: Any) -> tuple[str, Any]:
    """What ``function(*args)`` gives: its value, or the type of what it raised."""
    try:
        return "value", function(*args)
    except Exception as error:  # noqa: BLE001 - both paths must raise alike
        return "raised", type(error)


@pytest.mark.parametrize("text", TEMPLATES)
def test_key_function_renders_as_reference_key(text: str) -> None:
    template = KeyTemplate.parse(text)
    fast = key_function(template)
    datas: list[dict[str, Any]] = [{}, {"region": "eu"}]
    datas += [{"id": value} for value in VALUES]
    datas += [{"id": value, "region": region} for value in VALUES for region in ("eu", 3, None)]
    for data in datas:
        assert outcome(fast, data) == outcome(reference_key, template, data), data


def plain_join(
    key: KeyTemplate, settings: EnrichSettings, record: Record, table: Table | None, at: Any
) -> Iterator[Any]:
    """The join with no fast path: `reference_key`, then `Settler.outputs` for every record."""
    settler = Settler(settings)
    if table is None:
        unavailable = "no reference table loaded for this time"
        yield from settler.outputs(record, None, at, unavailable=unavailable)
        return
    join_key = reference_key(key, record.data)
    if join_key is None:
        missing = f"the record lacks a field of key {key.text!r}"
        yield from settler.outputs(record, None, at, missing=missing)
        return
    missing = f"no reference row with key {join_key!r}"
    yield from settler.outputs(record, table.get(join_key), at, missing=missing)


def plain(output: Any) -> Any:
    """An output made comparable: a dead letter as its tag and fields but when it was made."""
    if isinstance(output, TaggedOutput):
        return output.tag, {**output.value, "error_timestamp": None}
    return output


SETTINGS = [
    EnrichSettings("p", into="profile", missing=missing, unavailable=unavailable)
    for missing in ("pass", "drop", "dead_letter")
    for unavailable in ("dead_letter", "missing")
] + [
    EnrichSettings("p", into="profile", fields=("tier", "absent")),
    EnrichSettings("p", into=None, prefix="p_", fields=("tier", "risk")),
    EnrichSettings("p", into=None, prefix="", missing="drop"),
]
TABLE: Table = {
    "c1": {"id": "c1", "tier": "gold", "risk": 0.9, "tags": ["a"]},
    "7": {"id": 7, "tier": "silver"},
    "2.5": {"tier": "odd"},
    "true": {"tier": "bool"},
    "": {"tier": "empty"},
}


def records() -> list[Record]:
    """Records that hit, miss, lack the key field or hold it null, with and without origins."""
    datas: list[dict[str, Any]] = [{"n": n, "id": value} for n, value in enumerate(VALUES)]
    datas += [{"n": -1}, {"n": -2, "id": "c404"}, {"n": -3, "id": "c1", "tier": "mine"}]
    origin = Message(b"{}", {"a": "b"}, Origin("file", path="/in.jsonl", line=3))
    return [Record(data, origin if index % 2 else None) for index, data in enumerate(datas)]


@pytest.mark.parametrize("settings", SETTINGS, ids=repr)
@pytest.mark.parametrize("table", [TABLE, None, {}], ids=["table", "no table", "empty table"])
def test_join_fast_path_gives_what_the_plain_path_gives(
    settings: EnrichSettings, table: Table | None
) -> None:
    key = KeyTemplate.parse("{id}")
    join = _JoinFn(key, settings)
    join.setup()
    for record in records():
        for at in (Timestamp(1_764_064_800.5), MIN_TIMESTAMP):
            fast = [plain(output) for output in join.process(record, table, at)]
            slow = [plain(output) for output in plain_join(key, settings, record, table, at)]
            assert fast == slow, record
            for output in fast:  # the enriched records keep their own copy of the row
                if isinstance(output, Record) and isinstance(output.data.get("profile"), dict):
                    assert all(output.data["profile"] is not row for row in TABLE.values())
