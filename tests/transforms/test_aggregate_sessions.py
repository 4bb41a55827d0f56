"""Bounded sessions: any split into partial sessions, and blocks, give the general path's rows."""

from __future__ import annotations

import random
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.transforms.window import TimestampedValue

from transforms.aggregate_sessions import BoundedSessions, SessionsCombineFn
from transforms.aggregate_spec import AggregateSpec
from transforms.message import Record
from transforms.sessions import Sessionize, SessionizeBlocks, SessionSpec

SPEC = AggregateSpec.from_dict({
    "window": {"type": "session", "gap": "10s"}, "group_by": ["k"],
    "aggregates": {"n": "count()", "lo": "min(v)", "hi": "max(v)"},
})  # fmt: skip


def sessions_by_sorting(micros: list[int], gap_micros: int) -> list[tuple[int, int, dict]]:
    """Sorts the events and starts a session where an event's window starts after the rest end.

    Windows in whole milliseconds, as Beam's batch runner merges them.
    """
    result: list[list[Any]] = []
    for t in sorted(micros):
        start, end = t // 1000, (t + gap_micros) // 1000
        if result and start < result[-1][1]:
            last = result[-1]
            last[1] = max(last[1], end)
            last[2].append(t)
        else:
            result.append([start, end, [t]])
    return [(s, e, {"n": len(ts), "lo": min(ts), "hi": max(ts)}) for s, e, ts in result]


@pytest.mark.parametrize("seed", range(20))
def test_any_split_and_order_gives_the_sorted_sessions(seed: int) -> None:
    rng = random.Random(seed)
    micros = [rng.randrange(0, 200_000_000) for _ in range(rng.randrange(1, 60))]
    micros += [50_000_900, 60_000_100]  # 9.9992 s apart, but their windows do not overlap
    rng.shuffle(micros)
    combine = SessionsCombineFn(SPEC)
    cuts = sorted(rng.sample(range(len(micros) + 1), k=min(4, len(micros) + 1)))
    accumulators = []
    for low, high in zip([0, *cuts], [*cuts, len(micros)], strict=True):
        accumulator = combine.create_accumulator()
        for t in micros[low:high]:
            values, _ = combine.prepare({"v": t}, t / 1e6)
            accumulator = combine.add_input(accumulator, (values, t))
        accumulators.append(accumulator)
    rng.shuffle(accumulators)
    merged = combine.merge_accumulators(accumulators)
    assert combine.extract_output(merged) == sessions_by_sorting(micros, 10_000_000)


def stamped_events(seed: int) -> list[tuple[Record, float]]:
    rng = random.Random(seed)
    start = 1_764_064_800.0
    events = [
        (Record({"user": rng.choice(["a", "b", "c", None]), "page": rng.choice("xyz")}),
         start + rng.uniform(0, 900))
        for _ in range(300)
    ]  # fmt: skip
    return [*events, (Record({"user": "d", "page": "x"}), start + 100.0009),
            (Record({"user": "d", "page": "y"}), start + 130.0001)]  # fmt: skip


# Outputs by list name: module level, so the in-process runner's copy of the DoFn appends to
# the same lists.
SEEN: dict[str, list[Any]] = {}


def keep(value: Any, into: str) -> None:
    SEEN[into].append(value.data if isinstance(value, Record) else value["reason"])


def run_sessionize(blocks: bool, events: list[tuple[Record, float]]) -> tuple[list, list]:
    spec = SessionSpec("user", gap=30.0, include_fields=("page",))
    SEEN.update(rows=[], errors=[])
    with beam.Pipeline() as p:
        if blocks:
            out, bad = (
                p | beam.Create([events[i : i + 50] for i in range(0, len(events), 50)])
                | SessionizeBlocks(spec, "t")
            )  # fmt: skip
        else:
            records = p | beam.Create([TimestampedValue(r, t) for r, t in events])
            out, bad = records | Sessionize(spec, "t")
        out | "Rows" >> beam.Map(keep, "rows")
        bad | "Errors" >> beam.Map(keep, "errors")
    rows = sorted(SEEN["rows"], key=lambda r: (r["user"], r["session_start"]))
    return rows, sorted(SEEN["errors"])


def test_blocks_give_the_rows_and_errors_of_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = stamped_events(seed=4)
    random.Random(1).shuffle(events)
    by_blocks = run_sessionize(True, events)
    by_records = run_sessionize(False, events)
    monkeypatch.setattr(BoundedSessions, "supports", staticmethod(lambda spec: False))
    general = run_sessionize(False, events)
    assert by_blocks == by_records == general
    assert len(by_blocks[0]) > 10 and "missing_key" in by_blocks[1]
