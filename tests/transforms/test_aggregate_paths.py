"""The bounded fast path of WindowedAggregate gives the rows of the general (streaming) path."""

from __future__ import annotations

import random
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from transforms.aggregate import WindowedAggregate
from transforms.aggregate_spec import AggregateSpec
from transforms.message import Message, Origin, Record

PANE = ("timing", "is_final", "pane_index")


def events(n: int, seed: int) -> list[tuple[dict[str, Any], float]]:
    rng = random.Random(seed)
    start = 1_764_064_800.0
    return [
        ({"k": rng.choice("abc"), "v": rng.randint(0, 50), "u": rng.randrange(30)},
         start + rng.uniform(0, 600))
        for _ in range(n)
    ]  # fmt: skip


def record(data: dict[str, Any], ts: float) -> TimestampedValue:
    return TimestampedValue(Record(data, Message(b"{}", {}, Origin("test"))), ts)


# Rows seen per run, by run name: module level, so the in-process runner's copy of the DoFn
# appends to the same lists.
SEEN: dict[str, list[dict[str, Any]]] = {}


def keep(record: Record, run: str) -> None:
    SEEN[run].append({k: v for k, v in record.data.items() if k not in PANE})


def collect(rows: beam.PCollection, run: str) -> list[dict[str, Any]]:
    SEEN[run] = []
    rows | beam.Map(keep, run)
    return SEEN[run]


def run_bounded(spec: AggregateSpec, data: list[tuple[dict[str, Any], float]]) -> list[dict]:
    with beam.Pipeline() as p:
        records = p | beam.Create([record(d, t) for d, t in data])
        rows, _ = records | WindowedAggregate(spec, "t")
        out = collect(rows, "bounded")
    return out


def run_streaming(spec: AggregateSpec, data: list[tuple[dict[str, Any], float]]) -> list[dict]:
    stream = TestStream().advance_watermark_to(1_764_064_800.0)
    stream = stream.add_elements([record(d, t) for d, t in data])
    stream = stream.advance_watermark_to_infinity()
    with beam.Pipeline(options=PipelineOptions(streaming=True)) as p:
        rows, _ = p | stream | WindowedAggregate(spec, "t")
        out = collect(rows, "streaming")
    return out


@pytest.mark.parametrize(
    "window",
    [{"type": "tumbling", "size": "60s"}, {"type": "hopping", "size": "120s", "every": "30s"}],
)
def test_fast_and_general_paths_give_the_same_rows(window: dict[str, str]) -> None:
    spec = AggregateSpec.from_dict({
        "window": window, "group_by": ["k"],
        "aggregates": {"n": "count()", "s": "sum(v)", "m": "mean(v)", "hi": "max(v)",
                       "big": "count_if(v > 25)", "users": "approx_count_distinct(u)"},
        "having": "n >= 2",
    })  # fmt: skip
    data = events(400, seed=5)
    fast = run_bounded(spec, data)
    general = run_streaming(spec, data)
    key = lambda row: (row["k"], row["window_start"])  # noqa: E731
    assert sorted(fast, key=key) == sorted(general, key=key)
    assert len(fast) > 10
