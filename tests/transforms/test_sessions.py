"""Tests of transforms.sessions: session rows, merging, early rows, late and keyless records.

Expected sessions come from `plain_sessions`, a plain-Python sessionization written here.
"""

from __future__ import annotations

import calendar
import random
from collections import defaultdict
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as Events
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from transforms.blocks import Batch, Block, Unbatch
from transforms.event_time import format_timestamp
from transforms.message import Record
from transforms.schema import Field, Schema
from transforms.sessions import Sessionize, SessionSpec, session_schema

pytestmark = pytest.mark.usefixtures("live_direct_runner")

T0 = calendar.timegm((2026, 11, 25, 10, 0, 0))
GAP = 60.0


def plain_sessions(events: list[tuple[str, float, str]], gap: float) -> list[dict[str, Any]]:
    """Sessionizes ``(user, time, page)`` events: a session ends after ``gap`` of inactivity."""
    by_user: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for user, t, page in events:
        by_user[user].append((t, page))
    rows = []
    for user, items in by_user.items():
        items.sort()
        current = [items[0]]
        for item in items[1:]:
            if item[0] - current[-1][0] < gap:
                current.append(item)
            else:
                rows.append(_row(user, current))
                current = [item]
        rows.append(_row(user, current))
    return rows


def _row(user: str, items: list[tuple[float, str]]) -> dict[str, Any]:
    return {
        "user_id": user,
        "session_start": format_timestamp(items[0][0]),
        "session_end": format_timestamp(items[-1][0]),
        "event_count": len(items),
        "duration_s": items[-1][0] - items[0][0],
        "first_page": items[0][1],
        "last_page": items[-1][1],
    }


def event(user: str | None, t: float, page: str) -> TimestampedValue:
    data = {"page": page, "ts": format_timestamp(t)}
    if user is not None:
        data["user_id"] = user
    return TimestampedValue(Record(data, None, t), t)


def sessionize(events: beam.PCollection, spec: SessionSpec) -> tuple[Any, Any]:
    """Runs `Sessionize` on one record per element; returns its rows (one each) and errors."""
    rows, errors = events | "Blocks" >> Batch() | Sessionize(spec, "test")
    return rows | "Rows" >> Unbatch(), errors


def without_timing(row: Record) -> dict[str, Any]:
    return {name: value for name, value in row.data.items() if name != "timing"}


def streaming() -> beam.Pipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return beam.Pipeline(options=options)


SPEC = SessionSpec("user_id", GAP, include_fields=("page",))


def test_out_of_order_event_bridges_two_sessions_into_one() -> None:
    first = [("a", T0, "/home"), ("a", T0 + 100, "/cart"), ("b", T0 + 10, "/home")]
    bridge = ("a", T0 + 50, "/search")
    stream = (
        Events()
        .advance_watermark_to(T0)
        .add_elements([event(*e) for e in first])
        .advance_watermark_to(T0 + 30)
        .add_elements([event(*bridge)])
        .advance_watermark_to(T0 + 1000)
        .advance_watermark_to_infinity()
    )
    expected = plain_sessions([*first, bridge], GAP)
    assert [r["event_count"] for r in expected if r["user_id"] == "a"] == [3]

    with streaming() as pipeline:
        rows, errors = sessionize(pipeline | stream, SPEC)
        assert_that(rows | beam.Map(without_timing), equal_to(expected))
        assert_that(rows | "Timing" >> beam.Map(lambda r: r.data["timing"]),
                    equal_to(["ON_TIME"] * len(expected)), label="on time")  # fmt: skip
        assert_that(errors, equal_to([]), label="no errors")


def test_early_rows_fire_before_the_session_closes() -> None:
    spec = SessionSpec("user_id", GAP, early_seconds=30, include_fields=("page",))
    stream = (
        Events()
        .advance_watermark_to(T0)
        .add_elements([event("a", T0, "/home"), event("a", T0 + 10, "/search")])
        .advance_processing_time(31)
        .add_elements([event("a", T0 + 20, "/cart")])
        .advance_watermark_to(T0 + 1000)
        .advance_watermark_to_infinity()
    )

    def check(rows: list[Record]) -> None:
        early = [r.data for r in rows if r.data["timing"] == "EARLY"]
        final = [r.data for r in rows if r.data["timing"] == "ON_TIME"]
        assert early and early[0]["event_count"] == 2, rows
        assert early[0]["last_page"] == "/search"
        assert len(final) == 1
        assert {k: v for k, v in final[0].items() if k != "timing"} == plain_sessions(
            [("a", T0, "/home"), ("a", T0 + 10, "/search"), ("a", T0 + 20, "/cart")], GAP
        )[0]

    with streaming() as pipeline:
        rows, _ = sessionize(pipeline | stream, spec)
        assert_that(rows, check)


def test_late_and_keyless_records_are_dead_lettered() -> None:
    stream = (
        Events()
        .advance_watermark_to(T0)
        .add_elements([event("a", T0, "/home"), event(None, T0 + 1, "/nokey")])
        .advance_watermark_to(T0 + 10 * GAP)
        .add_elements([event("a", T0 + 5, "/late")])
        .advance_watermark_to_infinity()
    )

    with streaming() as pipeline:
        rows, errors = sessionize(pipeline | stream, SPEC)
        assert_that(rows | beam.Map(without_timing),
                    equal_to(plain_sessions([("a", T0, "/home")], GAP)))  # fmt: skip
        reasons = errors | beam.Map(lambda d: (d["reason"], d["step"], d["payload_string"]))
        assert_that(
            reasons | beam.Map(lambda r: (r[0], r[1], "/late" in r[2] or "/nokey" in r[2])),
            equal_to([("late", "aggregate", True), ("missing_key", "sessions", True)]),
            label="dead letters",
        )


def test_bad_keys_and_times_a_session_cannot_hold_are_dead_lettered_on_a_stream() -> None:
    end = calendar.timegm((9999, 12, 31, 23, 59, 0))
    hostile = [
        TimestampedValue(Record({"user_id": ["a"], "page": "/list"}, None, T0), T0),
        TimestampedValue(Record({"user_id": {"a": 1}, "page": "/object"}, None, T0), T0),
        TimestampedValue(Record({"user_id": float("nan"), "page": "/nan"}, None, T0), T0),
        TimestampedValue(Record({"user_id": "b", "page": "/end"}, None, end), end),
    ]
    stream = (
        Events()
        .advance_watermark_to(T0)
        .add_elements([event("a", T0, "/home"), *hostile])
        .advance_watermark_to_infinity()
    )

    with streaming() as pipeline:
        rows, errors = sessionize(pipeline | stream, SPEC)
        assert_that(rows | beam.Map(without_timing),
                    equal_to(plain_sessions([("a", T0, "/home")], GAP)))  # fmt: skip
        reasons = errors | beam.Map(lambda d: (d["step"], d["reason"], d["payload_string"]))
        assert_that(
            reasons | beam.Map(lambda r: (r[0], r[1], r[2].split('"page": ')[1][:5])),
            equal_to(
                [
                    ("sessions", "bad_key", '"/lis'),
                    ("sessions", "bad_key", '"/obj'),
                    ("sessions", "bad_key", '"/nan'),
                    ("sessions", "bad_timestamp", '"/end'),
                ]
            ),  # fmt: skip
            label="dead letters",
        )


def test_bounded_sessions_of_several_users_match_plain_python() -> None:
    events = [(f"u{i % 3}", T0 + (i * 37) % 400 + (i % 2) * 0.25, f"/p{i}") for i in range(40)]
    events.append(("u0", T0 + 2000, "/alone"))
    with beam.Pipeline() as pipeline:
        records = pipeline | beam.Create([event(*e) for e in events])
        rows, _ = sessionize(records, SessionSpec("user_id", 45.0, include_fields=("page",)))
        assert_that(rows | beam.Map(without_timing), equal_to(plain_sessions(events, 45.0)))


def test_spec_refuses_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="gap"):
        SessionSpec("user_id", 0)
    with pytest.raises(ValueError, match="key field"):
        SessionSpec("", 60)
    with pytest.raises(ValueError, match="named twice"):
        SessionSpec("first_page", 60, include_fields=("page",))
    with pytest.raises(ValueError, match="distinct"):
        SessionSpec("user_id", 60, include_fields=("page", "page"))


def test_row_schema_keeps_the_types_of_the_records() -> None:
    records = Schema((Field("user_id", "INTEGER"), Field("amount", "FLOAT")))
    schema = session_schema(SessionSpec("user_id", 60, include_fields=("amount",)), records)
    assert [(f.name, f.type) for f in schema.fields] == [
        ("user_id", "INTEGER"), ("session_start", "TIMESTAMP"), ("session_end", "TIMESTAMP"),
        ("event_count", "INTEGER"), ("duration_s", "FLOAT"), ("first_amount", "FLOAT"),
        ("last_amount", "FLOAT"), ("timing", "STRING"),
    ]  # fmt: skip


def sessions_by_sorting(micros: list[int], gap_micros: int) -> list[tuple[int, int, int]]:
    """``(first, last, count)`` per session of sorted events, windows in whole milliseconds.

    An event joins the session before it when its window starts before the session's ends (as
    Beam's window coder keeps them: 100.0009 s and 130.0001 s are two sessions with a 30 s gap).
    """
    sessions: list[list[int]] = []
    for t in sorted(micros):
        if sessions and t // 1000 < (sessions[-1][1] + gap_micros) // 1000:
            sessions[-1][1:] = [t, sessions[-1][2] + 1]
        else:
            sessions.append([t, t, 1])
    return [(first, last, count) for first, last, count in sessions]


def test_bounded_blocks_over_several_bundles_give_the_sorted_sessions() -> None:
    rng = random.Random(4)
    events = [
        Record({"user_id": rng.choice(["a", "b", "c", None]), "page": rng.choice("xyz")}, None,
               T0 + round(rng.uniform(0, 900), 3))
        for _ in range(300)
    ]  # fmt: skip
    events += [Record({"user_id": "d", "page": "x"}, None, T0 + 100.0009),
               Record({"user_id": "d", "page": "y"}, None, T0 + 130.0001)]  # fmt: skip
    rng.shuffle(events)
    expected = []
    for user in "abcd":
        times = [round(e.event_time * 1e6) for e in events if e.data["user_id"] == user]
        for first, last, count in sessions_by_sorting(times, 30_000_000):
            expected.append((user, format_timestamp(first / 1e6), format_timestamp(last / 1e6),
                             count))  # fmt: skip
    blocks = [Block(events[i : i + 37]) for i in range(0, len(events), 37)]
    with beam.Pipeline() as pipeline:
        rows, errors = pipeline | beam.Create(blocks) | Sessionize(SessionSpec("user_id", 30), "t")
        got = (
            rows
            | Unbatch()
            | beam.Map(
                lambda r: (
                    r.data["user_id"],
                    r.data["session_start"],
                    r.data["session_end"],
                    r.data["event_count"],
                )
            )
        )
        assert_that(got, equal_to(expected))
        missing = sum(e.data["user_id"] is None for e in events)
        assert_that(errors | beam.Map(lambda d: d["reason"]), equal_to(["missing_key"] * missing),
                    label="errors")  # fmt: skip
