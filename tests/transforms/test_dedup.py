"""Tests of transforms.dedup.Dedup: ids, event and processing time, across bundles, counts.

Dedup takes blocks of records: each step of a stream below is one block, as a bundle gives it.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.utils.timestamp import Timestamp

from tests.support import COLLECTED, Collect
from transforms.blocks import Block
from transforms.dedup import Dedup, DedupKey
from transforms.message import Message, Origin, Record

T0 = 1_764_064_800.0  # 2025-11-25T10:00:00Z


pytestmark = pytest.mark.usefixtures("live_direct_runner")


def rec(offset: float, origin: Origin | None = None, **data: Any) -> Record:
    message = None
    if origin is not None:
        message = Message(json.dumps(data).encode(), {}, origin)
    return Record(data, message, T0 + offset)


def block(*records: Record) -> list[Block]:
    """One block of ``records``, as `TestStream.add_elements` and `beam.Create` take it."""
    return [Block(records)]


def run(
    build: Callable[[beam.Pipeline], beam.PCollection], dedup: Dedup, streaming: bool
) -> tuple[list[Record], dict[str, int]]:
    tag = uuid.uuid4().hex
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=streaming))
    kept = build(pipeline) | dedup | "Records of the blocks" >> beam.FlatMap(list)
    _ = kept | beam.ParDo(Collect(tag))
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = defaultdict(int)
    for counter in result.metrics().query(MetricsFilter().with_namespace("pipelines"))["counters"]:
        counters[counter.key.metric.name] += counter.committed or counter.attempted or 0
    return COLLECTED.pop(tag, []), dict(counters)


def ids(records: list[Record]) -> list[tuple[str, float]]:
    return sorted((r.data["id"], r.data["n"]) for r in records)


def test_duplicates_across_bundles_are_dropped_and_counted() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(T0)
        .add_elements(block(rec(0, id="a", n=1), rec(5, id="b", n=2)))
        .add_elements(block(rec(30, id="a", n=3), rec(31, id="c", n=4)))  # a: 30 s after a@0
        .advance_watermark_to(T0 + 200)
        .add_elements(block(rec(700, id="a", n=5), rec(10, id="b", n=6)))  # a: 700 s: kept again
        .add_elements(block(rec(599, id="a", n=7)))  # 599 s after a@0, 101 s before a@700
        .advance_watermark_to_infinity()
    )
    records, counters = run(lambda p: p | stream, Dedup("id", within=600), streaming=True)
    assert ids(records) == [("a", 1), ("a", 5), ("b", 2), ("c", 4)]
    assert counters["dropped"] == 3
    assert counters["dropped.duplicate"] == 3


def test_a_copy_arriving_after_the_watermark_passed_its_span_is_kept_again() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(T0)
        .add_elements(block(rec(0, id="a", n=1)))
        .advance_watermark_to(T0 + 1000)  # a@0 is forgotten at 600
        .add_elements(block(rec(50, id="a", n=2)))
        .advance_watermark_to_infinity()
    )
    records, counters = run(lambda p: p | stream, Dedup("id", within=600), streaming=True)
    assert ids(records) == [("a", 1), ("a", 2)]
    assert counters.get("dropped.duplicate", 0) == 0


def test_batch_keeps_copies_further_apart_than_the_span() -> None:
    # Beam's DeduplicatePerKey drops all three in a batch run (its timer never fires there).
    events = [rec(0, id="a", n=1), rec(30, id="a", n=2), rec(5000, id="a", n=3),
              rec(5010, id="a", n=4), rec(1, id="b", n=5)]  # fmt: skip
    events = block(*events[:3]) + block(*events[3:])  # copies in one block and across blocks
    records, counters = run(lambda p: p | beam.Create(events), Dedup("id", 600), streaming=False)
    kept_ids = sorted(r.data["id"] for r in records)
    assert kept_ids == ["a", "a", "b"]
    kept_times = sorted(r.data["n"] for r in records if r.data["id"] == "a")
    assert kept_times[0] in (1, 2) and kept_times[1] in (3, 4)
    assert counters["dropped.duplicate"] == 2


def test_by_message_id_and_by_source_coordinates() -> None:
    pubsub = [
        rec(0, Origin("pubsub", message_id="m1"), id="x", n=1),
        rec(0, Origin("pubsub", message_id="m1"), id="y", n=2),  # redelivered message
        rec(0, Origin("pubsub", message_id="m2"), id="x", n=3),
    ]
    records, counters = run(
        lambda p: p | beam.Create(block(*pubsub)), Dedup("@message_id", 60), streaming=False
    )
    assert len(records) == 2 and {r.origin.origin.message_id for r in records} == {"m1", "m2"}
    assert counters["dropped.duplicate"] == 1

    kafka = [
        rec(0, Origin("kafka", topic="t", partition=0, offset=7), id="x", n=1),
        rec(0, Origin("kafka", topic="t", partition=0, offset=7), id="x", n=2),  # read twice
        rec(0, Origin("kafka", topic="t", partition=1, offset=7), id="x", n=3),
    ]
    records, counters = run(lambda p: p | beam.Create(block(*kafka)), Dedup("@source", 60), False)
    assert sorted(r.origin.origin.partition for r in records) == [0, 1]
    assert counters["dropped.duplicate"] == 1


def test_records_without_an_id_pass_and_nested_ids_work() -> None:
    events = [rec(0, id="a", n=1), rec(1, n=2), rec(2, n=3), rec(3, id=None, n=4),
              rec(0, meta={"id": 7}, n=5), rec(1, meta={"id": 7}, n=6)]  # fmt: skip
    records, _ = run(lambda p: p | beam.Create(block(*events)), Dedup("id", 60), streaming=False)
    assert sorted(r.data["n"] for r in records) == [1, 2, 3, 4, 5, 6]
    records, counters = run(lambda p: p | beam.Create(block(*events)), Dedup("meta.id", 60), False)
    assert len(records) == 5 and counters["dropped.duplicate"] == 1


def test_processing_time_span_ends_on_the_runner_clock() -> None:
    # The DirectRunner's TestStream clock starts at 0, and a DoFn sets processing-time timers
    # from the wall clock, so the clock is moved past the wall clock plus the span.
    past_wall_clock = int(Timestamp.now()) + 3600  # whole milliseconds for TestStream
    stream = (
        TestStream()
        .advance_watermark_to(T0)
        .add_elements(block(rec(0, id="a", n=1), rec(0, id="b", n=2), rec(9, id="b", n=5)))
        .add_elements(block(rec(500, id="a", n=3)))  # same processing-time span: a duplicate
        .advance_processing_time(past_wall_clock)
        .add_elements(block(rec(0, id="a", n=4)))  # the span is over
        .advance_watermark_to_infinity()
    )
    dedup = Dedup("id", within=60, time_domain="processing_time")
    records, counters = run(lambda p: p | stream, dedup, streaming=True)
    assert ids(records) == [("a", 1), ("a", 4), ("b", 2)]  # b@9 came with b@0
    assert counters["dropped.duplicate"] == 2


def test_bad_settings_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="within"):
        Dedup("id", within=0)
    with pytest.raises(ValueError, match="time_domain"):
        Dedup("id", within=1, time_domain="wall")
    with pytest.raises(ValueError, match="@message_id"):
        DedupKey("@offset")


def test_ids_that_only_look_alike_are_different_records() -> None:
    values = [1, "1", 1.0, True, "true", ["x"], '["x"]', None]
    records = [rec(n, id=value, n=n) for n, value in enumerate(values)]
    copies = [rec(len(values) + n, id=value, n=100 + n) for n, value in enumerate(values)]
    dedup = Dedup("id", within=600)
    kept, counters = run(lambda p: p | beam.Create(block(*records, *copies)), dedup, False)
    kept_n = sorted(record.data["n"] for record in kept)
    # Each id's first record is kept; its copy (the same JSON value) is dropped; no id drops
    # another; a record without an id (None) is never a duplicate.
    assert kept_n == [*range(len(values)), 100 + values.index(None)]
    assert counters["dropped.duplicate"] == len(values) - 1
