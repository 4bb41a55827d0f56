"""Bounded sessions: any split into partial sessions gives the sorted sessions."""

from __future__ import annotations

import random
from typing import Any

import pytest

from transforms.aggregate_sessions import SessionsCombineFn
from transforms.aggregate_spec import AggregateSpec

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
