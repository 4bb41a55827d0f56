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
from transforms.aggregate_sessions import BoundedSessions
from transforms.aggregate_spec import AggregateSpec
from transforms.message import Message, Origin, Record

pytestmark = pytest.mark.usefixtures("live_direct_runner")

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


SESSION_SPEC = {
    "window": {"type": "session", "gap": "10s"}, "group_by": ["k"],
    "aggregates": {"n": "count()", "s": "sum(v)", "m": "mean(v)", "lo": "min(v)", "hi": "max(v)",
                   "big": "count_if(v > 25)", "users": "approx_count_distinct(u)",
                   "last": "latest(v)"},
    "having": "n >= 2",
}  # fmt: skip


def session_events(seed: int) -> list[tuple[dict[str, Any], float]]:
    """Random events (sub-millisecond times, any order) and gaps right at a millisecond's edge."""
    start = 1_764_064_800.0
    edges = [
        ({"k": "d", "v": 1, "u": 1}, start + 100.0009),
        ({"k": "d", "v": 2, "u": 2}, start + 110.0001),  # 9.9992 s later, but a window apart
        ({"k": "d", "v": 3, "u": 3}, start + 120.0001),  # exactly the gap: a new session
        ({"k": "d", "v": 4, "u": 4}, start + 125.0),
        ({"k": "d", "v": 5, "u": 5}, start + 134.9999),  # bridges into the next one
        ({"k": "d", "v": 6, "u": 6}, start + 140.0),
    ]
    return events(400, seed) + edges


def keep_exact(
    record: Record,
    run: str,
    timestamp: Any = beam.DoFn.TimestampParam,
    window: Any = beam.DoFn.WindowParam,
) -> None:
    SEEN[run].append({"row": record.data, "micros": timestamp.micros})
    SEEN[f"{run} windows"].append(type(window).__name__)


def run_bounded_exact(spec: AggregateSpec, data: list[tuple[dict[str, Any], float]], run: str):
    """Rows with their pane fields and output timestamps, and the windows they are in."""
    SEEN[run], SEEN[f"{run} windows"] = [], []
    with beam.Pipeline() as p:
        records = p | beam.Create([record(d, t) for d, t in data])
        rows, _ = records | WindowedAggregate(spec, "t")
        rows | beam.Map(keep_exact, run)
    key = lambda row: (row["row"]["k"], row["row"]["window_start"])  # noqa: E731
    return sorted(SEEN[run], key=key), set(SEEN[f"{run} windows"])


@pytest.mark.parametrize("lateness", ["0s", "30s"])
def test_session_fast_path_gives_the_general_bounded_rows(
    lateness: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = AggregateSpec.from_dict({**SESSION_SPEC, "allowed_lateness": lateness})
    data = session_events(seed=7)
    random.Random(3).shuffle(data)
    fast, fast_windows = run_bounded_exact(spec, data, "fast")
    monkeypatch.setattr(BoundedSessions, "supports", staticmethod(lambda spec: False))
    general, general_windows = run_bounded_exact(spec, data, "general")
    assert fast == general
    assert (fast_windows, general_windows) == ({"GlobalWindow"}, {"IntervalWindow"})
    assert len(fast) > 20
    assert {row["row"]["is_final"] for row in fast} == {lateness == "0s"}


def test_session_fast_path_gives_the_streaming_rows() -> None:
    spec = AggregateSpec.from_dict(SESSION_SPEC)
    # Whole milliseconds: the streaming runner merges windows in microseconds, the batch
    # runner in milliseconds.
    data = [(d, round(t, 3)) for d, t in session_events(seed=11)]
    fast = run_bounded(spec, data)
    general = run_streaming(spec, data)
    key = lambda row: (row["k"], row["window_start"])  # noqa: E731
    assert sorted(fast, key=key) == sorted(general, key=key)
    assert len(fast) > 20
