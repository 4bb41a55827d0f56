"""The block path (ParseJsonBlocks -> AggregateBlocks) gives what the record path gives."""

from __future__ import annotations

import json
import random
from typing import Any

import apache_beam as beam
import pytest

from tests.transforms.test_aggregate_paths import collect, events, record, run_bounded
from transforms import aggregate_blocks
from transforms.aggregate_blocks import AggregateBlocks
from transforms.aggregate_spec import AggregateSpec
from transforms.event_time import format_timestamp
from transforms.message import Message, Origin
from transforms.parse import EventTime, ParseJson, ParseJsonBlocks
from transforms.schema import Field, Schema

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


# Parse results by name, module level so the runner's copies append to the same lists.
PARSED: dict[str, list[Any]] = {}


def keep(value: Any, name: str) -> None:
    PARSED[name].append(value)


def keep_timed(record: Any, name: str, t: Any = beam.DoFn.TimestampParam) -> None:
    PARSED[name].append((record, float(t)))


def keep_all(block: list[Any], name: str) -> None:
    PARSED[name].extend(block)


def comparable(error: dict[str, Any]) -> tuple:
    """A dead letter without what differs between runs (when; the stack frames)."""
    kept = {k: v for k, v in error.items() if k not in ("error_timestamp", "stacktrace")}
    return tuple(sorted((k, repr(v)) for k, v in kept.items()))


def test_block_parse_gives_the_records_and_dead_letters_of_the_record_parse() -> None:
    rng = random.Random(3)
    payloads = []
    for i in range(300):
        event = {"k": rng.choice("abc"), "v": rng.randint(0, 9),
                 "ts": format_timestamp(1_764_064_800 + i)}  # fmt: skip
        kind = i % 10
        if kind == 0:
            payloads.append(b"{not json")
        elif kind == 1:
            payloads.append(json.dumps({**event, "v": "x"}).encode())
        elif kind == 2:
            payloads.append(json.dumps({**event, "ts": "yesterday"}).encode())
        else:
            payloads.append(json.dumps(event).encode())
    messages = [Message(p, {}, Origin("file", path="/in", line=n)) for n, p in enumerate(payloads)]
    schema = Schema((Field("k", "STRING"), Field("v", "INTEGER"), Field("ts", "TIMESTAMP")))
    settings = {"schema": schema, "event_time": EventTime(field="ts")}
    PARSED.update(records=[], errors=[], block_records=[], block_errors=[])

    with beam.Pipeline() as p:
        records, errors = p | "One" >> beam.Create(messages) | ParseJson("t", **settings)
        records | "Keep" >> beam.Map(keep_timed, "records")
        errors | "Comparable" >> beam.Map(comparable) | "Keep errors" >> beam.Map(keep, "errors")
        blocks = [messages[i : i + 64] for i in range(0, len(messages), 64)]
        parsed, block_errors = (
            p
            | "Blocks" >> beam.Create(blocks)
            | "Parse blocks" >> (ParseJsonBlocks("t", **settings))
        )
        parsed | "Keep blocks" >> beam.Map(keep_all, "block_records")
        _ = (
            block_errors
            | "Comparable block errors" >> beam.Map(comparable)
            | "Keep block errors" >> beam.Map(keep, "block_errors")
        )
    by_line = lambda pair: pair[0].origin.origin.line  # noqa: E731
    assert sorted(PARSED["block_records"], key=by_line) == sorted(PARSED["records"], key=by_line)
    assert sorted(PARSED["block_errors"]) == sorted(PARSED["errors"])
    assert len(PARSED["records"]) == 210 and len(PARSED["errors"]) == 90
