"""Tests of transforms.join.WindowedJoin: clicks x impressions within 5 minutes.

The stream below is spelled out by hand with what each join type must give: pairs within 300 s
(either side first), records that never join (emitted when their window closes, or dropped),
a record without the key, and a late click. Each step of the stream is one block per side, as
a bundle of a stream gives them.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream

from tests.support import COLLECTED, Collect
from transforms.blocks import Block
from transforms.join import WindowedJoin
from transforms.message import Message, Origin, Record

T0 = 1_764_064_800.0


pytestmark = pytest.mark.usefixtures("live_direct_runner")


def click(name: str, offset: float, ad: str | None) -> Record:
    data = {"click_id": name, "user_id": f"u-{name}"} | ({"ad_id": ad} if ad else {})
    message = Message(name.encode(), {}, Origin("file", path="/clicks", line=int(name[1:])))
    return Record(data, message, T0 + offset)


def impression(name: str, offset: float, ad: str) -> Record:
    data = {"impression_id": name, "ad_id": ad, "campaign_id": f"camp-{ad}"}
    return Record(data, None, T0 + offset)


def arrive(*records: Record) -> list[tuple[str, Block]]:
    """The records as a bundle of the stream brings them: a block per side."""
    sides: dict[str, Block] = {}
    for record in records:
        side = "click" if "click_id" in record.data else "impression"
        sides.setdefault(side, Block()).append(record)
    return list(sides.items())


def stream() -> TestStream:
    return (
        TestStream()
        .advance_watermark_to(T0)
        .add_elements(
            arrive(
                impression("i1", 0, "a"),
                click("c3", 50, "b"),
                click("c4", 10, "d"),
                click("c5", 20, None),
            )
        )  # fmt: skip
        .add_elements(arrive(click("c1", 120, "a"), impression("i2", 100, "b")))
        .advance_watermark_to(T0 + 350)
        .add_elements(arrive(click("c2", 400, "a"), impression("i3", 1000, "c")))
        .advance_watermark_to(T0 + 2000)
        .add_elements(arrive(click("c6", 100, "a")))  # late: key a's windows closed up to 700
        .advance_watermark_to(T0 + 5000)
        .advance_watermark_to_infinity()
    )


def run(how: str) -> tuple[list[tuple[dict, float]], list[dict], dict[str, int]]:
    tag = uuid.uuid4().hex
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
    events = pipeline | stream()
    clicks = events | "Clicks" >> beam.FlatMap(lambda e: [e[1]] if e[0] == "click" else [])
    shown = events | "Impressions" >> beam.FlatMap(lambda e: [e[1]] if e[0] != "click" else [])
    joined, errors = (clicks, shown) | WindowedJoin(
        "ad_id", within=300, how=how, names=("click", "impression"), pipeline="join_test"
    )
    records = joined | "Records of the blocks" >> beam.FlatMap(list)
    _ = records | "Joined" >> beam.ParDo(Collect(tag + "joined"))
    _ = errors | "Errors" >> beam.ParDo(Collect(tag + "errors"))
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = defaultdict(int)
    for counter in result.metrics().query(MetricsFilter().with_namespace("pipelines"))["counters"]:
        counters[counter.key.metric.name] += counter.committed or counter.attempted or 0
    rows = [(r.data, r.event_time) for r in COLLECTED.pop(tag + "joined", [])]
    return rows, COLLECTED.pop(tag + "errors", []), dict(counters)


def summary(rows: list[tuple[dict, float]]) -> list[tuple[Any, ...]]:
    """(click id, impression id, ad, output time offset) per output row."""
    return sorted(
        (
            (
                (row["click"] or {}).get("click_id"),
                (row["impression"] or {}).get("impression_id"),
                row["ad_id"],
                t - T0,
            )
            for row, t in rows
        ),
        key=repr,
    )


PAIRS = [("c1", "i1", "a", 120.0), ("c3", "i2", "b", 100.0)]


def test_inner_join_pairs_within_the_span_and_drops_the_rest() -> None:
    rows, errors, counters = run("inner")
    assert summary(rows) == PAIRS
    pair = next(row for row, _ in rows if row["ad_id"] == "a")
    assert pair == {
        "ad_id": "a",
        "click": {"click_id": "c1", "user_id": "u-c1", "ad_id": "a"},
        "impression": {"impression_id": "i1", "ad_id": "a", "campaign_id": "camp-a"},
    }
    assert counters["dropped.unmatched"] == 4  # c2, c4, c5 (no key), i3
    assert [(e["reason"], e["step"], e["payload_string"]) for e in errors] == [
        ("late", "join", "c6")
    ]


def test_left_join_emits_unmatched_clicks_when_their_window_closes() -> None:
    rows, errors, counters = run("left")
    # c4@10 closes at 310, c2@400 at 700; c5 has no key and comes out at once.
    assert [s for s in summary(rows) if s[1] is None and s[0] != "c5"] == [
        ("c2", None, "a", 700.0),
        ("c4", None, "d", 310.0),
    ]
    assert sorted((s[:3] for s in summary(rows)), key=repr) == sorted(
        [p[:3] for p in PAIRS] + [("c2", None, "a"), ("c4", None, "d"), ("c5", None, None)],
        key=repr,
    )
    assert counters["dropped.unmatched"] == 1  # i3
    assert len(errors) == 1


def test_outer_join_emits_unmatched_rows_of_both_sides() -> None:
    rows, errors, counters = run("outer")
    assert sorted((s[:3] for s in summary(rows)), key=repr) == sorted(
        [p[:3] for p in PAIRS]
        + [("c2", None, "a"), ("c4", None, "d"), ("c5", None, None), (None, "i3", "c")],
        key=repr,
    )
    assert (None, "i3", "c", 1300.0) in summary(rows)  # i3@1000 closes at 1300
    assert counters.get("dropped.unmatched", 0) == 0
    assert len(errors) == 1


def test_bad_settings_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="how"):
        WindowedJoin("ad_id", 300, how="full")
    with pytest.raises(ValueError, match="within"):
        WindowedJoin("ad_id", 0)
    with pytest.raises(ValueError, match="names"):
        WindowedJoin("ad_id", 300, names=("ad_id", "x"))
