"""The side input join's fast paths against the plain ones, on the same input.

The plain path renders every key with `reference_key` (the template's own `render`) and settles
every record through `Settler.outputs`; the fast path renders keys with `key_function` and
merges a found row at once. Both must give the same outputs for every record, table, policy and
merge. The block path (`SideInputEnrich.blocks`) must give the records, dead letters and
counters of the record path.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from tests.support import COLLECTED, Collect
from transforms.blocks import Block
from transforms.enrich import EnrichSettings, Settler, key_function, reference_key
from transforms.enrich_side_input import SideInputEnrich, Table, _JoinFn
from transforms.io.redis_text import KeyTemplate
from transforms.message import Message, Origin, Record
from transforms.metrics import NAMESPACE

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


class _TableLoader:
    def __call__(self, at: float) -> Table:
        return TABLE


class _FailingLoader:
    def __call__(self, at: float) -> Table:
        raise OSError("the reference is gone")


def _event_time(index: int) -> float | None:
    """Every third record has no event time (it keeps the source's timestamp)."""
    return None if index % 3 == 0 else 1_764_064_800.25 + index


def _run(
    build: Callable[[beam.Pipeline], tuple[beam.PCollection, beam.PCollection]],
) -> tuple[list[str], list[str], dict[str, int]]:
    """Runs a join; returns its records and dead letters (as sorted reprs) and its counters.

    Dead letters are compared without when they were made (``error_timestamp``) and the
    stack trace; reprs compare records holding NaN, which is not equal to itself.
    """
    tag = uuid.uuid4().hex
    pipeline = beam.Pipeline()
    records, errors = build(pipeline)
    _ = records | "Records" >> beam.ParDo(Collect(tag + "records"))
    _ = errors | "Errors" >> beam.ParDo(Collect(tag + "errors"))
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = defaultdict(int)
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        counters[counter.key.metric.name] += counter.committed or counter.attempted or 0
    dead_letters = [
        repr({**error, "error_timestamp": None, "stacktrace": None})
        for error in COLLECTED.pop(tag + "errors", [])
    ]
    enriched = [repr(record) for record in COLLECTED.pop(tag + "records", [])]
    return sorted(enriched), sorted(dead_letters), dict(counters)


@pytest.mark.parametrize("settings", SETTINGS, ids=repr)
@pytest.mark.parametrize("loader", [_TableLoader(), _FailingLoader()], ids=["table", "no table"])
def test_block_path_gives_what_the_record_path_gives(settings: EnrichSettings, loader: Any) -> None:
    transform = SideInputEnrich(loader, KeyTemplate.parse("{id}"), settings)
    pairs = [(record, _event_time(index)) for index, record in enumerate(records())]
    timestamped = [
        record if event_time is None else TimestampedValue(record, event_time)
        for record, event_time in pairs
    ]
    blocks = [pairs[start : start + 4] for start in range(0, len(pairs), 4)]  # lists, as read
    block_join = transform.blocks()
    assert block_join is not None

    def by_records(pipeline: beam.Pipeline) -> tuple[beam.PCollection, beam.PCollection]:
        return pipeline | beam.Create(timestamped, reshuffle=False) | transform

    def by_blocks(pipeline: beam.Pipeline) -> tuple[beam.PCollection, beam.PCollection]:
        out, errors = pipeline | beam.Create(blocks, reshuffle=False) | block_join
        assert out.element_type is Block
        return out | beam.FlatMap(lambda block: [*block]), errors

    plain_records, plain_errors, plain_counters = _run(by_records)
    block_records, block_errors, block_counters = _run(by_blocks)
    assert block_records == plain_records
    assert block_errors == plain_errors
    assert block_counters == plain_counters
    assert plain_records or plain_errors or "dropped.missing_reference" in plain_counters


def test_a_bounded_refresh_has_no_block_path() -> None:
    refreshed = SideInputEnrich(
        _TableLoader(), KeyTemplate.parse("{id}"), SETTINGS[0], refresh=60, start=0, stop=180
    )
    assert refreshed.blocks() is None
