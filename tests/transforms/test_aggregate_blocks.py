"""The block path (AggregateBlocks) gives what the record path gives."""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import pytest

from tests.transforms.test_aggregate_paths import collect, events, record, run_bounded
from transforms import aggregate_blocks
from transforms.aggregate_blocks import AggregateBlocks
from transforms.aggregate_spec import AggregateSpec

SPEC = {
    "group_by": ["k"],
    "aggregates": {"n": "count()", "s": "sum(v)", "m": "mean(v)", "hi": "max(v)",
                   "big": "count_if(v > 25)", "users": "approx_count_distinct(u)",
                   "p50": "approx_quantile(v, 0.5)", "last": "latest(v)"},
    "having": "n >= 2",
}  # fmt: skip


def blocks_of(data: list[tuple[dict[str, Any], float]], size: int) -> list[list[Any]]:
    pairs = [(record(d, t).value, t) for d, t in data]
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


def run_blocks(spec: AggregateSpec, data: list[tuple[dict[str, Any], float]]) -> list[dict]:
    with beam.Pipeline() as p:
        rows, _ = p | beam.Create(blocks_of(data, 37)) | AggregateBlocks(spec, "test")
        out = collect(rows, "blocks")
    return out


@pytest.mark.parametrize(
    "windowing",
    [
        {"window": {"type": "tumbling", "size": "60s"}},
        {"window": {"type": "hopping", "size": "120s", "every": "30s"}},
        # A bounded run has no processing time: the global window fires once, at the end.
        {"window": {"type": "global"}, "trigger": {"early": "10s"}},
    ],
)
@pytest.mark.parametrize("max_groups", [aggregate_blocks.MAX_GROUPS, 5])
def test_block_path_gives_the_rows_of_the_record_path(
    windowing: dict[str, Any], max_groups: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small MAX_GROUPS flushes partial aggregates mid-bundle, which must not change a row.
    monkeypatch.setattr(aggregate_blocks, "MAX_GROUPS", max_groups)
    spec = AggregateSpec.from_dict({**windowing, **SPEC})
    data = events(500, seed=11)
    key = lambda row: (row["k"], row["window_start"] or "")  # noqa: E731
    blocks = sorted(run_blocks(spec, data), key=key)
    records = sorted(run_bounded(spec, data), key=key)
    assert blocks == records
    assert len(blocks) >= 3


def test_sessions_and_count_triggers_are_refused() -> None:
    sessions = AggregateSpec.from_dict({"window": {"type": "session", "gap": "5m"}, **SPEC})
    assert not AggregateBlocks.supports(sessions)
    with pytest.raises(ValueError, match="session"):
        AggregateBlocks(sessions, "test")
