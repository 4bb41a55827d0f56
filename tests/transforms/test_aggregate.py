"""Tests of transforms.aggregate.windowed.WindowedAggregate on the DirectRunner.

Expected values come from a plain-Python reference in this module: windows are assigned by
arithmetic, rows grouped, aggregates computed exactly (quantiles checked by rank).

Runner facts these tests work around (Beam 2.77 BundleBasedDirectRunner, ``--streaming``):

- Counters keep only the first bundle of each step per worker thread: ``StateSampler.scoped_state``
  caches the ScopedState by name, with the MetricsContainer of the first bundle, so later bundles
  increment an already-committed container. `transforms.io.live` mends that; the
  `live_direct_runner` fixture enables it for the tests that read counters.
- A global window with a count trigger stalls the streaming DirectRunner ("Monitor task detected
  a pipeline stall"), so global windows run in batch.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import random
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from tests.support import COLLECTED, Collect
from transforms.aggregate import fold as aggregate_fold
from transforms.aggregate.gate import LatenessGate
from transforms.aggregate.spec import AggregateSpec
from transforms.aggregate.windowed import LATE, WindowedAggregate, row_schema
from transforms.blocks import Block
from transforms.message import Message, Origin, Record
from transforms.schema import Field, Schema

# 2026-11-25T10:00:00Z: a multiple of every window size used here.
BASE = calendar.timegm((2026, 11, 25, 10, 0, 0))
PIPELINE = "agg_test"


def _iso(seconds: float) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _message(data: dict[str, Any], line: int) -> Message:
    return Message(
        payload=json.dumps(data, sort_keys=True).encode("utf-8"),
        attributes={"origin": "test"},
        origin=Origin("file", path="/data/in.jsonl", line=line),
    )


_LINE = iter(range(1, 1_000_000))


def event(offset: float, **data: Any) -> TimestampedValue:
    """A record at BASE + offset seconds, with its original message."""
    return TimestampedValue(Record(data, _message(data, next(_LINE)), BASE + offset), BASE + offset)


def block(values: list[TimestampedValue]) -> list[TimestampedValue]:
    """One block of the records of ``values``, at their oldest time: what a bundle sends on."""
    oldest = min(float(v.timestamp) for v in values)
    return [TimestampedValue(Block(v.value for v in values), oldest)]


def blocks(values: list[TimestampedValue], size: int = 50) -> list[TimestampedValue]:
    """The records of ``values`` in blocks of ``size``."""
    return [block(values[i : i + size])[0] for i in range(0, len(values), size)]


class Result:
    def __init__(self, rows: list[dict], errors: list[dict], counters: dict[str, int]) -> None:
        self.rows = rows
        self.errors = errors
        self.counters = counters


def _run(
    build: Callable[[beam.Pipeline], beam.PCollection],
    spec: AggregateSpec,
    streaming: bool,
    dead_letter_late: bool = True,
) -> Result:
    tag = uuid.uuid4().hex
    options = PipelineOptions(streaming=True) if streaming else PipelineOptions()
    pipeline = beam.Pipeline(options=options)
    rows, errors = build(pipeline) | WindowedAggregate(spec, PIPELINE, dead_letter_late)
    _ = rows | "Rows" >> beam.FlatMap(list) | "Collect rows" >> beam.ParDo(Collect(tag + "rows"))
    _ = errors | "Collect errors" >> beam.ParDo(Collect(tag + "errors"))
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = defaultdict(int)
    query = result.metrics().query(MetricsFilter().with_namespace("pipelines"))
    for counter in query["counters"]:
        counters[counter.key.metric.name] += counter.committed or counter.attempted or 0
    rows_out = COLLECTED.pop(tag + "rows", [])
    assert all(isinstance(r, Record) and r.origin is None for r in rows_out)
    return Result([r.data for r in rows_out], COLLECTED.pop(tag + "errors", []), dict(counters))


def run_stream(spec: AggregateSpec, stream: TestStream, dead_letter_late: bool = True) -> Result:
    return _run(lambda p: p | stream, spec, True, dead_letter_late)


def run_batch(spec: AggregateSpec, events: list[TimestampedValue]) -> Result:
    return _run(lambda p: p | beam.Create(blocks(events)), spec, False)


def spec_of(**document: Any) -> AggregateSpec:
    return AggregateSpec.from_dict(document)


# ----------------------------------------------------------------- the reference


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


Event = tuple[dict[str, Any], float]  # (data, absolute event time)


def tumbling_windows(size: float, t: float) -> list[tuple[float, float]]:
    start = (t // size) * size
    return [(start, start + size)]


def hopping_windows(size: float, every: float, t: float) -> list[tuple[float, float]]:
    start = (t // every) * every
    found = []
    while start > t - size:
        found.append((start, start + size))
        start -= every
    return found


def sessions(gap: float, times: Iterable[float]) -> list[tuple[float, float, list[float]]]:
    """Merges [t, t + gap) intervals that overlap; returns (start, end, member times)."""
    merged: list[tuple[float, float, list[float]]] = []
    for t in sorted(times):
        if merged and t < merged[-1][1]:
            start, end, members = merged[-1]
            merged[-1] = (start, max(end, t + gap), [*members, t])
        else:
            merged.append((t, t + gap, [t]))
    return merged


def ref_group(
    events: list[Event], group_by: tuple[str, ...], window: dict[str, Any]
) -> dict[tuple[tuple, float, float], list[Event]]:
    """(group key, window start, window end) -> the events in that window."""
    by_key: dict[tuple, list[Event]] = defaultdict(list)
    for data, t in events:
        by_key[tuple(data.get(g) for g in group_by)].append((data, t))
    groups: dict[tuple[tuple, float, float], list[Event]] = defaultdict(list)
    for key, members in by_key.items():
        if window["type"] == "session":
            for start, end, _ in sessions(window["gap"], [t for _, t in members]):
                groups[(key, start, end)] = [(d, t) for d, t in members if start <= t < end]
            continue
        for data, t in members:
            if window["type"] == "tumbling":
                assigned = tumbling_windows(window["size"], t)
            elif window["type"] == "hopping":
                assigned = hopping_windows(window["size"], window["every"], t)
            else:
                assigned = [(None, None)]
            for start, end in assigned:
                groups[(key, start, end)].append((data, t))
    return groups


def _numbers(events: list[Event], read: Callable[[dict], Any]) -> list[Any]:
    return [read(d) for d, _ in events if _is_number(read(d))]


def ref_count(events: list[Event]) -> int:
    return len(events)


def ref_count_if(cond: Callable[[dict], bool]) -> Callable[[list[Event]], int]:
    return lambda events: sum(1 for d, _ in events if cond(d))


def ref_sum(read: Callable[[dict], Any]) -> Callable[[list[Event]], Any]:
    return lambda events: sum(_numbers(events, read)) if _numbers(events, read) else None


def ref_mean(read: Callable[[dict], Any]) -> Callable[[list[Event]], Any]:
    def mean(events: list[Event]) -> Any:
        values = _numbers(events, read)
        return sum(values) / len(values) if values else None

    return mean


def ref_min(read: Callable[[dict], Any]) -> Callable[[list[Event]], Any]:
    return lambda events: min(_numbers(events, read), default=None)


def ref_max(read: Callable[[dict], Any]) -> Callable[[list[Event]], Any]:
    return lambda events: max(_numbers(events, read), default=None)


def ref_distinct(read: Callable[[dict], Any]) -> Callable[[list[Event]], int]:
    return lambda events: len({read(d) for d, _ in events if read(d) is not None})


def ref_latest(read: Callable[[dict], Any]) -> Callable[[list[Event]], Any]:
    def latest(events: list[Event]) -> Any:
        present = [(t, read(d)) for d, t in events if read(d) is not None]
        return max(present, key=lambda p: (p[0], repr(p[1])))[1] if present else None

    return latest


def ref_rows(
    events: list[Event],
    group_by: tuple[str, ...],
    window: dict[str, Any],
    aggregates: dict[str, Callable[[list[Event]], Any]],
    having: Callable[[dict], bool] | None = None,
) -> dict[tuple, dict[str, Any]]:
    """(group key values..., window_start, window_end) -> expected aggregates."""
    rows = {}
    for (key, start, end), members in ref_group(events, group_by, window).items():
        row = dict(zip(group_by, key, strict=True))
        row.update({name: fn(members) for name, fn in aggregates.items()})
        if having is None or having(row):
            rows[(*key, _iso(start) if start is not None else None, _iso(end) if end else None)] = (
                row
            )
    return rows


def row_key(row: dict[str, Any], group_by: tuple[str, ...]) -> tuple:
    return (*(row[g] for g in group_by), row["window_start"], row["window_end"])


def assert_value(actual: Any, expected: Any, what: str) -> None:
    if isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-9), what
    else:
        assert actual == expected, what
        assert type(actual) is type(expected), what


def assert_quantile(value: Any, values: list[float], q: float, what: str) -> None:
    data = sorted(values)
    if not data:
        assert value is None, what
        return
    below = sum(1 for v in data if v < value) / len(data)
    at_most = sum(1 for v in data if v <= value) / len(data)
    assert value in data, what
    assert below <= q + 0.02 and at_most >= q - 0.02, (what, value, below, at_most, q)


def panes_by_window(rows: list[dict], group_by: tuple[str, ...]) -> dict[tuple, list[dict]]:
    panes: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        panes[row_key(row, group_by)].append(row)
    for found in panes.values():
        found.sort(key=lambda r: r["pane_index"])
    return panes


def check_pane_sequence(panes: list[dict]) -> None:
    """Pane indexes count up from 0; EARLY panes come before the ON_TIME pane, LATE after."""
    assert [p["pane_index"] for p in panes] == list(range(len(panes)))
    order = {"EARLY": 0, "ON_TIME": 1, "LATE": 2}
    timings = [order[p["timing"]] for p in panes]
    assert timings == sorted(timings)
    assert sum(1 for p in panes if p["timing"] == "ON_TIME") <= 1
    assert all(isinstance(p["is_final"], bool) for p in panes)
    assert not any(p["is_final"] for p in panes[:-1])  # nothing follows a final pane


# ------------------------------------------------------------------ streaming


def _request_events() -> list[TimestampedValue]:
    """Out of order, two endpoints, a health check with no errors, all in [0, 180)."""
    return [
        event(75, endpoint="/cart", status_code=200, latency_ms=30),
        event(5, endpoint="/cart", status_code=500, latency_ms=120),
        event(59.5, endpoint="/cart", status_code=200, latency_ms=10),
        event(0, endpoint="/login", status_code=503, latency_ms=300),
        event(130, endpoint="/cart", status_code=404, latency_ms=7),
        event(61, endpoint="/login", status_code=200, latency_ms=20),
        event(20, endpoint="/cart", status_code=502, latency_ms=80.5),
        event(119.999, endpoint="/login", status_code=200, latency_ms=40),
        event(45, endpoint="/health", status_code=200, latency_ms=1),
    ]


ISSUE_SPEC = """\
event_time: ts
window: {type: tumbling, size: 60s}
group_by: [endpoint]
aggregates:
  requests: count()
  errors: count_if(status_code >= 500)
  avg_latency_ms: mean(latency_ms)
  max_latency_ms: max(latency_ms)
having: requests >= 1
allowed_lateness: 0s
"""

ISSUE_REFERENCE = {
    "requests": ref_count,
    "errors": ref_count_if(lambda d: _is_number(d.get("status_code")) and d["status_code"] >= 500),
    "avg_latency_ms": ref_mean(lambda d: d.get("latency_ms")),
    "max_latency_ms": ref_max(lambda d: d.get("latency_ms")),
}


def _as_events(values: list[TimestampedValue]) -> list[Event]:
    return [(v.value.data, float(v.timestamp)) for v in values]


def test_issue_spec_tumbling_out_of_order_on_time_panes() -> None:
    spec = AggregateSpec.load(ISSUE_SPEC)
    events = _request_events()
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements(block(events[:4]))
        .add_elements(block(events[4:]))
        .advance_watermark_to(BASE + 400)
        .advance_watermark_to_infinity()
    )
    result = run_stream(spec, stream)
    expected = ref_rows(
        _as_events(events),
        ("endpoint",),
        {"type": "tumbling", "size": 60},
        ISSUE_REFERENCE,
        having=lambda row: row["requests"] >= 1,
    )
    assert len(expected) == 6
    assert {row_key(r, ("endpoint",)) for r in result.rows} == set(expected)
    assert len(result.rows) == len(expected)  # one pane per window
    for row in result.rows:
        want = expected[row_key(row, ("endpoint",))]
        for name in ("endpoint", *ISSUE_REFERENCE):
            assert_value(row[name], want[name], name)
        assert row["timing"] == "ON_TIME"
        assert row["pane_index"] == 0
        assert isinstance(row["is_final"], bool)
        assert list(row) == [
            "endpoint",
            "window_start",
            "window_end",
            "requests",
            "errors",
            "avg_latency_ms",
            "max_latency_ms",
            "timing",
            "is_final",
            "pane_index",
        ]
    # Window bounds as ISO strings, independently spelled out.
    cart_first = expected[("/cart", "2026-11-25T10:00:00Z", "2026-11-25T10:01:00Z")]
    assert cart_first["requests"] == 3 and cart_first["errors"] == 2
    assert result.errors == []


def test_having_filters_rows() -> None:
    spec = spec_of(
        window={"type": "tumbling", "size": "60s"},
        group_by=["endpoint"],
        aggregates={"requests": "count()", "errors": "count_if(status_code >= 500)"},
        having="errors >= 1 and endpoint != '/login'",
    )
    events = _request_events()
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements(block(events))
        .advance_watermark_to(BASE + 400)
    )
    result = run_stream(spec, stream.advance_watermark_to_infinity())
    expected = ref_rows(
        _as_events(events),
        ("endpoint",),
        {"type": "tumbling", "size": 60},
        {"requests": ref_count, "errors": ISSUE_REFERENCE["errors"]},
        having=lambda row: row["errors"] >= 1 and row["endpoint"] != "/login",
    )
    assert expected == {
        ("/cart", "2026-11-25T10:00:00Z", "2026-11-25T10:01:00Z"): {
            "endpoint": "/cart",
            "requests": 3,
            "errors": 2,
        }
    }
    assert [{k: r[k] for k in ("endpoint", "requests", "errors")} for r in result.rows] == list(
        expected.values()
    )


def test_early_panes_by_count_then_on_time_accumulating() -> None:
    spec = spec_of(
        window={"type": "tumbling", "size": "60s"},
        group_by=["k"],
        aggregates={"n": "count()", "total": "sum(v)", "last": "latest(v)"},
        trigger={"early": 2},
    )
    batches = [
        [event(30, k="a", v=1), event(10, k="a", v=2)],
        [event(50, k="a", v=4), event(5, k="a", v=8)],
        [event(20, k="a", v=16)],
    ]
    stream = TestStream().advance_watermark_to(BASE)
    for batch in batches:
        stream = stream.add_elements(block(batch))
    result = run_stream(
        spec, stream.advance_watermark_to(BASE + 200).advance_watermark_to_infinity()
    )
    panes = panes_by_window(result.rows, ("k",))
    assert list(panes) == [("a", "2026-11-25T10:00:00Z", "2026-11-25T10:01:00Z")]
    found = panes[("a", "2026-11-25T10:00:00Z", "2026-11-25T10:01:00Z")]
    check_pane_sequence(found)
    early = [p for p in found if p["timing"] == "EARLY"]
    on_time = [p for p in found if p["timing"] == "ON_TIME"]
    assert len(early) == 2 and len(on_time) == 1
    seen: list[Event] = []
    for pane, batch in zip(early, batches, strict=False):
        seen += _as_events(batch)
        assert pane["n"] == ref_count(seen)  # accumulating: everything so far
        assert pane["total"] == ref_sum(lambda d: d["v"])(seen)
        assert pane["last"] == ref_latest(lambda d: d["v"])(seen)
    everything = _as_events([e for b in batches for e in b])
    assert on_time[0]["n"] == 5
    assert on_time[0]["total"] == ref_sum(lambda d: d["v"])(everything) == 31
    assert on_time[0]["last"] == ref_latest(lambda d: d["v"])(everything) == 4
    assert on_time[0]["pane_index"] == 2


def test_early_panes_by_processing_time_then_on_time() -> None:
    spec = spec_of(
        window={"type": "tumbling", "size": "60s"},
        group_by=["k"],
        aggregates={"n": "count()"},
        trigger={"early": "10s"},
    )
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements(block([event(10, k="a"), event(40, k="a")]))
        .advance_processing_time(11)
        .add_elements(block([event(5, k="a")]))
        .advance_processing_time(11)
        .advance_watermark_to(BASE + 200)
        .advance_watermark_to_infinity()
    )
    result = run_stream(spec, stream)
    found = panes_by_window(result.rows, ("k",))[("a", _iso(BASE), _iso(BASE + 60))]
    check_pane_sequence(found)
    assert [p["n"] for p in found if p["timing"] == "EARLY"] == [2, 3]
    assert [p["n"] for p in found if p["timing"] == "ON_TIME"] == [3]


def _late_stream(late_a: list[TimestampedValue]) -> TestStream:
    """Window [0, 60) of key a closes at 60; the allowed lateness is 120 s (until 180)."""
    return (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements(block([event(10, k="a", v=1, line=1), event(70, k="a", v=2)]))
        .advance_watermark_to(BASE + 65)  # [0, 60) fires ON_TIME
        .add_elements(block([event(30, k="a", v=4)]))  # late, within lateness
        .advance_watermark_to(BASE + 100)
        .add_elements(block([event(40, k="a", v=8)]))  # late, within lateness
        .advance_watermark_to(BASE + 600)  # well past 60 + 120 (+ one step of gate slack)
        .add_elements(block(late_a))  # beyond the lateness
        .advance_watermark_to(BASE + 900)
        .advance_watermark_to_infinity()
    )


LATE_SPEC = {
    "window": {"type": "tumbling", "size": "60s"},
    "group_by": ["k"],
    "aggregates": {"n": "count()", "total": "sum(v)"},
    "allowed_lateness": "2m",
}


@pytest.mark.parametrize("accumulation", ["accumulating", "discarding"])
def test_late_panes_within_lateness_and_dead_letters_beyond(
    accumulation: str, live_direct_runner: None
) -> None:
    spec = spec_of(**LATE_SPEC, trigger={"accumulation": accumulation})
    too_late = [event(20, k="a", v=100), event(50, k="a", v=200)]
    result = run_stream(spec, _late_stream(too_late))
    panes = panes_by_window(result.rows, ("k",))
    first = panes[("a", _iso(BASE), _iso(BASE + 60))]
    check_pane_sequence(first)
    assert [p["timing"] for p in first] == ["ON_TIME", "LATE", "LATE"]
    on_time_events = [({"v": 1}, 10.0)]
    with_first_late = [*on_time_events, ({"v": 4}, 30.0)]
    everything = [*with_first_late, ({"v": 8}, 40.0)]
    total = ref_sum(lambda d: d["v"])
    if accumulation == "accumulating":
        assert [p["n"] for p in first] == [1, 2, 3]
        assert [p["total"] for p in first] == [
            total(on_time_events),
            total(with_first_late),
            total(everything),
        ]
    else:
        assert [p["n"] for p in first] == [1, 1, 1]
        assert [p["total"] for p in first] == [1, 4, 8]
        assert sum(p["n"] for p in first) == ref_count(everything)
        assert sum(p["total"] for p in first) == total(everything) == 13
    second = panes[("a", _iso(BASE + 60), _iso(BASE + 120))]
    assert [(p["timing"], p["n"], p["total"]) for p in second] == [("ON_TIME", 1, 2)]
    # Records beyond the lateness are in no row...
    assert all(p["total"] < 100 for p in result.rows)
    # ... they are dead-lettered with their original bytes and origin ...
    assert len(result.errors) == 2
    for error, original in zip(
        sorted(result.errors, key=lambda e: e["event_timestamp"]), too_late, strict=True
    ):
        message = original.value.origin
        assert error["reason"] == "late"
        assert error["step"] == "aggregate"
        assert error["pipeline"] == PIPELINE
        assert error["error_type"] == "LateRecord"
        assert error["payload_bytes"] == message.payload
        assert error["payload_string"] == message.payload.decode()
        assert json.loads(error["payload_bytes"]) == original.value.data
        assert error["source"] == {
            "system": "file",
            "path": "/data/in.jsonl",
            "line": message.origin.line,
        }
        assert error["attributes"] == [{"key": "origin", "value": "test"}]
        assert error["event_timestamp"] == _iso(float(original.timestamp))
        assert "2026-11-25T10:01:00Z" in error["error_message"]
        assert "120s" in error["error_message"]
    # ... and counted; the four others entered the aggregation.
    assert result.counters.get(LATE) == 2
    assert result.counters.get("aggregated") == 4


def test_late_records_counted_but_not_dead_lettered_when_disabled(live_direct_runner: None) -> None:
    spec = spec_of(**LATE_SPEC)
    result = run_stream(spec, _late_stream([event(20, k="a", v=100)]), dead_letter_late=False)
    assert result.errors == []
    assert result.counters.get(LATE) == 1
    assert all(p["total"] < 100 for p in result.rows)
    first = panes_by_window(result.rows, ("k",))[("a", _iso(BASE), _iso(BASE + 60))]
    assert [p["n"] for p in first] == [1, 2, 3]


def test_late_record_of_a_new_key_is_dead_lettered() -> None:
    spec = spec_of(
        window={"type": "tumbling", "size": "60s"},
        group_by=["k"],
        aggregates={"n": "count()"},
    )
    new_key = "b"
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements(block([event(10, k="a")]))
        .advance_watermark_to(BASE + 600)
        .add_elements(block([event(20, k=new_key)]))  # its window closed 540 s ago
        .advance_watermark_to(BASE + 900)
        .advance_watermark_to_infinity()
    )
    result = run_stream(spec, stream)
    assert [r["k"] for r in result.rows] == ["a"]  # holds: the record is in no row
    assert [e["reason"] for e in result.errors] == ["late"]  # fails: it vanished


def _gate_block(*offsets: float) -> TimestampedValue:
    """A block for shard 0 of the gate: items as `PrepareBlock` makes them."""
    items = Block((Record({"t": offset}), ("a",), ((offset,), BASE + offset)) for offset in offsets)
    return TimestampedValue((0, items), BASE + min(offsets))


def test_lateness_gate_decisions_follow_the_watermark_and_rearm_after_idle() -> None:
    """One shard, tumbling minutes, no lateness (span 120 s): the exact late/on-time split.

    A record is late when its window's end is before the shard's horizon (its last clock
    firing). The clock stops once it passes the newest event time plus the span, and the next
    block re-arms it at horizon + step, however far the watermark has gone.
    """
    window = spec_of(
        window={"type": "tumbling", "size": "60s"}, group_by=["k"], aggregates={"n": "count()"}
    ).window
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([TimestampedValue((0, BASE), BASE)])  # the primer: newest 0, clock at 0
        .advance_watermark_to(BASE + 125)  # fires 0, 60, 120; stops (120 >= 0 + 120)
        .add_elements([_gate_block(59, 60)])  # ends 60 < 120: late; 120: not
        .advance_watermark_to(BASE + 1000)  # re-armed at 180, fires, stops (180 >= 60 + 120)
        .add_elements([_gate_block(119, 130)])  # 120 < 180: late; 180: not
        .advance_watermark_to(BASE + 1010)  # re-armed at 240: fires 240, 300; stops
        .add_elements([_gate_block(235, 245)])  # 240 < 300: late; 300: not
        .advance_watermark_to_infinity()
    )
    tag = uuid.uuid4().hex
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
    gated = (
        pipeline
        | stream
        | beam.ParDo(LatenessGate(window, 0.0, "test")).with_outputs("late", main="on_time")
    )
    _ = gated.on_time | "On time" >> beam.FlatMap(list) | beam.ParDo(Collect(tag + "on_time"))
    _ = gated.late | "Late" >> beam.ParDo(Collect(tag + "late"))
    pipeline.run().wait_until_finish()
    on_time = COLLECTED.pop(tag + "on_time")
    assert sorted((key, values[0], t - BASE) for _, key, (values, t) in on_time) == [
        (("a",), 60, 60.0),
        (("a",), 130, 130.0),
        (("a",), 245, 245.0),
    ]
    late = COLLECTED.pop(tag + "late")
    assert sorted((json.loads(e["payload_string"])["t"], e["reason"]) for e in late) == [
        (59, "late"),
        (119, "late"),
        (235, "late"),
    ]


def test_hopping_windows_out_of_order() -> None:
    window = {"type": "hopping", "size": 120, "every": 60}
    spec = spec_of(
        window={"type": "sliding", "size": "2m", "period": "1m"},
        group_by=["k"],
        aggregates={"n": "count()", "hi": "max(v)", "lo": "min(v)"},
    )
    values = [
        event(130, k="a", v=3),
        event(10, k="a", v=7),
        event(70, k="b", v=1),
        event(65, k="a", v=-2),
        event(200, k="a", v=9),
        event(119, k="b", v=4),
    ]
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements(block(values[:3]))
        .add_elements(block(values[3:]))
        .advance_watermark_to(BASE + 600)
        .advance_watermark_to_infinity()
    )
    result = run_stream(spec, stream)
    expected = ref_rows(
        _as_events(values),
        ("k",),
        window,
        {"n": ref_count, "hi": ref_max(lambda d: d["v"]), "lo": ref_min(lambda d: d["v"])},
    )
    # Each record is in two windows, e.g. 10 s is in [-60, 60) and [0, 120).
    assert sum(r["n"] for r in expected.values()) == 2 * len(values)
    assert len(result.rows) == len(expected)
    for row in result.rows:
        want = expected[row_key(row, ("k",))]
        assert (row["n"], row["hi"], row["lo"]) == (want["n"], want["hi"], want["lo"])
        assert row["timing"] == "ON_TIME"


def test_sessions_merge_within_gap_and_through_a_bridge() -> None:
    spec = spec_of(
        window={"type": "sessions", "gap": "30s"},
        group_by=["k"],
        aggregates={"n": "count()", "first_to_last": "sum(v)"},
    )
    a_events = [event(0, k="a", v=1), event(60, k="a", v=2), event(70, k="a", v=4)]
    b_events = [event(0, k="b", v=1), event(20, k="b", v=2), event(100, k="b", v=4)]
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements(block(a_events + b_events))
        .add_elements(block([event(10, k="a", v=8)]))  # within the gap of 0: session [0, 40)
        .add_elements(block([event(35, k="a", v=16)]))  # bridges [0, 40) and [60, 100)
        .advance_watermark_to(BASE + 600)
        .advance_watermark_to_infinity()
    )
    result = run_stream(spec, stream)
    all_events = _as_events(a_events + b_events) + [({"k": "a", "v": 8}, BASE + 10.0)]
    all_events.append(({"k": "a", "v": 16}, BASE + 35.0))
    window = {"type": "session", "gap": 30}
    expected = ref_rows(
        all_events, ("k",), window, {"n": ref_count, "first_to_last": ref_sum(lambda d: d["v"])}
    )
    assert set(expected) == {
        ("a", _iso(BASE), _iso(BASE + 100)),
        ("b", _iso(BASE), _iso(BASE + 50)),
        ("b", _iso(BASE + 100), _iso(BASE + 130)),
    }
    assert {row_key(r, ("k",)) for r in result.rows} == set(expected)
    for row in result.rows:
        want = expected[row_key(row, ("k",))]
        assert (row["n"], row["first_to_last"]) == (want["n"], want["first_to_last"])
    assert expected[("a", _iso(BASE), _iso(BASE + 100))]["n"] == 5
    # Without the bridge, key a would have had two sessions.
    assert len(sessions(30, [0, 60, 70, 10])) == 2


def test_a_session_longer_than_the_gap_merges_with_a_record_near_its_end() -> None:
    """A bundle's session of 0..80 s (gap 30 s) is one partial; 100 s joins it at its end."""
    spec = spec_of(
        window={"type": "session", "gap": "30s"}, group_by=["k"], aggregates={"n": "count()"}
    )
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements(block([event(t, k="a") for t in (0, 20, 40, 60, 80)]))
        .add_elements(block([event(100, k="a")]))
        .advance_watermark_to(BASE + 600)
        .advance_watermark_to_infinity()
    )
    result = run_stream(spec, stream)
    assert [(r["window_start"], r["window_end"], r["n"]) for r in result.rows] == [
        (_iso(BASE), _iso(BASE + 130), 6)
    ]


# -------------------------------------------------------------------- batch


def _random_events(seed: int, n: int, span: int) -> list[TimestampedValue]:
    rng = random.Random(seed)
    values = []
    for _ in range(n):
        data: dict[str, Any] = {
            "region": rng.choice(["eu", "us"]),
            "tier": rng.choice(["free", "pro", "max"]),
            "user_id": f"u{rng.randrange(60)}",
            "status": rng.choice([200, 200, 200, 404, 500, 503]),
        }
        if rng.random() < 0.9:
            data["amount"] = rng.choice([rng.randint(0, 100), round(rng.uniform(0, 100), 2)])
        if rng.random() < 0.95:
            data["latency"] = round(rng.expovariate(1 / 50), 3)
        if rng.random() < 0.05:
            data["amount"] = None
        values.append(event(rng.randrange(span) + rng.choice([0, 0.5]), **data))
    return values


ALL_AGGREGATES = {
    "n": "count()",
    "errors": "count_if(status >= 500)",
    "total": "sum(amount)",
    "avg_latency": "mean(latency)",
    "min_amount": "min(amount)",
    "max_latency": "max(latency)",
    "users": "approx_count_distinct(user_id)",
    "p90": "approx_quantile(latency, 0.9)",
    "p25": "approx_quantile(latency, 0.25)",
    "last_status": "latest(status)",
}
ALL_REFERENCE: dict[str, Callable[[list[Event]], Any]] = {
    "n": ref_count,
    "errors": ref_count_if(lambda d: d["status"] >= 500),
    "total": ref_sum(lambda d: d.get("amount")),
    "avg_latency": ref_mean(lambda d: d.get("latency")),
    "min_amount": ref_min(lambda d: d.get("amount")),
    "max_latency": ref_max(lambda d: d.get("latency")),
    "users": ref_distinct(lambda d: d["user_id"]),
    "last_status": ref_latest(lambda d: d["status"]),
}
QUANTILES = {"p90": 0.9, "p25": 0.25}


def _check_batch(
    result: Result,
    values: list[TimestampedValue],
    group_by: tuple[str, ...],
    window: dict[str, Any],
    having: Callable[[dict], bool] | None = None,
) -> None:
    events = _as_events(values)
    expected = ref_rows(events, group_by, window, ALL_REFERENCE, having)
    groups = ref_group(events, group_by, window)
    assert len(result.rows) == len(expected)
    assert {row_key(r, group_by) for r in result.rows} == set(expected)
    for row in result.rows:
        key = row_key(row, group_by)
        want = expected[key]
        for name in ALL_REFERENCE:
            assert_value(row[name], want[name], f"{key} {name}")
        bounds = (None, None) if key[-2] is None else (_from_iso(key[-2]), _from_iso(key[-1]))
        members = groups[(key[:-2], *bounds)]
        latencies = [d["latency"] for d, _ in members if _is_number(d.get("latency"))]
        for name, q in QUANTILES.items():
            assert_quantile(row[name], latencies, q, f"{key} {name}")
        assert row["pane_index"] == 0


@pytest.mark.parametrize(
    ("window_doc", "window", "group_by"),
    [
        ({"type": "tumbling", "size": "1m"}, {"type": "tumbling", "size": 60}, ("region",)),
        (
            {"type": "hopping", "size": "5m", "every": "1m"},
            {"type": "hopping", "size": 300, "every": 60},
            ("region", "tier"),
        ),
        ({"type": "session", "gap": "20s"}, {"type": "session", "gap": 20}, ("tier", "region")),
    ],
)
@pytest.mark.parametrize("max_partials", [aggregate_fold.MAX_PARTIALS, 3])
def test_every_aggregate_against_the_reference(
    window_doc: dict,
    window: dict,
    group_by: tuple[str, ...],
    max_partials: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Few partials held: they are sent on mid-bundle, which must not change a row.
    monkeypatch.setattr(aggregate_fold, "MAX_PARTIALS", max_partials)
    values = _random_events(zlib.crc32(window["type"].encode()), 400, 900)
    spec = spec_of(window=window_doc, group_by=list(group_by), aggregates=ALL_AGGREGATES)
    result = run_batch(spec, values)
    _check_batch(result, values, group_by, window)
    assert all(r["timing"] == "ON_TIME" for r in result.rows)
    assert result.errors == []
    assert result.counters.get("aggregated") == len(values)


def test_no_group_keys_with_having() -> None:
    values = _random_events(42, 300, 600)
    events = _as_events(values)
    plain = ref_rows(events, (), {"type": "tumbling", "size": 120}, ALL_REFERENCE)
    threshold = sorted(row["errors"] for row in plain.values())[len(plain) // 2]
    spec = spec_of(
        window={"type": "tumbling", "size": "2m"},
        aggregates=ALL_AGGREGATES,
        having=f"errors > {threshold} or window_start == '2026-11-25T10:00:00Z'",
    )
    result = run_batch(spec, values)

    def having(row: dict) -> bool:
        return row["errors"] > threshold

    kept = {key for key, row in plain.items() if having(row) or key[0] == "2026-11-25T10:00:00Z"}
    assert 0 < len(kept) < len(plain)  # the filter keeps some rows and drops others
    assert {row_key(r, ()) for r in result.rows} == kept
    for row in result.rows:
        assert set(row) == {*ALL_AGGREGATES, "window_start", "window_end", "timing",
                            "is_final", "pane_index"}  # fmt: skip
        want = plain[row_key(row, ())]
        for name in ALL_REFERENCE:
            assert_value(row[name], want[name], name)


def test_global_window_running_totals_in_batch() -> None:
    values = _random_events(7, 200, 3600)
    spec = spec_of(
        window={"type": "global"},
        group_by=["region"],
        aggregates=ALL_AGGREGATES,
        trigger={"early": 50},
    )
    result = run_batch(spec, values)
    events = _as_events(values)
    expected = ref_rows(events, ("region",), {"type": "global"}, ALL_REFERENCE)
    # A bounded input reaches the end at once: the last pane of each group has every record.
    last = {}
    for row in sorted(result.rows, key=lambda r: r["pane_index"]):
        assert row["window_start"] is None and row["window_end"] is None
        last[row["region"]] = row
    assert set(last) == {"eu", "us"}
    for region, row in last.items():
        want = expected[(region, None, None)]
        for name in ALL_REFERENCE:
            assert_value(row[name], want[name], name)
    assert result.errors == []


def test_row_schema_types() -> None:
    spec = spec_of(
        window={"type": "tumbling", "size": "1m"},
        group_by=["endpoint", "region", "tags", "nested"],
        aggregates={
            "n": "count()",
            "errors": "count_if(status >= 500)",
            "total": "sum(amount)",
            "total_cents": "sum(amount * 100)",
            "avg": "mean(latency)",
            "lo": "min(latency)",
            "hi": "max( count_field )",
            "users": "approx_count_distinct(user_id)",
            "p95": "approx_quantile(latency, 0.95)",
            "last_status": "latest(status)",
            "last_unknown": "latest(mystery)",
            "last_tags": "latest(tags)",
        },
    )
    records = Schema(
        (
            Field("endpoint", "STRING"),
            Field("tags", "STRING", "REPEATED"),
            Field("nested", "RECORD", fields=(Field("x", "INTEGER"),)),
            Field("amount", "NUMERIC"),
            Field("latency", "FLOAT"),
            Field("count_field", "INT64"),
            Field("status", "INTEGER"),
            Field("user_id", "STRING"),
        )
    )
    expected = [
        ("endpoint", "STRING"),
        ("region", "STRING"),  # not in the record schema
        ("tags", "STRING"),  # repeated: default
        ("nested", "STRING"),  # record: default
        ("window_start", "TIMESTAMP"),
        ("window_end", "TIMESTAMP"),
        ("n", "INTEGER"),
        ("errors", "INTEGER"),
        ("total", "NUMERIC"),
        ("total_cents", "FLOAT"),  # an expression, not a plain field
        ("avg", "FLOAT"),
        ("lo", "FLOAT"),
        ("hi", "INTEGER"),
        ("users", "INTEGER"),
        ("p95", "FLOAT"),
        ("last_status", "INTEGER"),
        ("last_unknown", "FLOAT"),
        ("last_tags", "FLOAT"),
        ("timing", "STRING"),
        ("is_final", "BOOLEAN"),
        ("pane_index", "INTEGER"),
    ]
    schema = row_schema(spec, records)
    assert [(f.name, f.type) for f in schema.fields] == expected
    assert all(f.mode == "NULLABLE" for f in schema.fields)
    without = row_schema(spec, None)
    assert [(f.name, f.type) for f in without.fields][:4] == [
        ("endpoint", "STRING"),
        ("region", "STRING"),
        ("tags", "STRING"),
        ("nested", "STRING"),
    ]
    assert without.get("total").type == "FLOAT"
    assert without.get("n").type == "INTEGER"


def test_global_window_with_time_trigger_runs() -> None:
    values = [event(i, region="eu") for i in range(5)]
    spec = spec_of(
        window={"type": "global"}, group_by=["region"], aggregates={"n": "count()"},
        trigger={"early": "10s"},
    )  # fmt: skip
    result = run_batch(spec, values)
    assert max(r["n"] for r in result.rows) == 5
