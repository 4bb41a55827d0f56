"""Tests of transforms.io.generator: the bounded event source."""

from __future__ import annotations

import calendar
import math
import pickle
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that

from transforms.errors import RecordError
from transforms.event_time import parse_timestamp
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.generator import BLOCK, GeneratorSource
from transforms.io.registry import make_source
from transforms.message import Message
from transforms.parse import EventTime, parse_message
from transforms.schema import Field, Schema

START = calendar.timegm((2026, 11, 25, 10, 0, 0))
START_ISO = "2026-11-25T10:00:00Z"

EVENT_SCHEMA = Schema(
    (
        Field("event_id", "STRING", "REQUIRED"),
        Field("ts", "TIMESTAMP", "REQUIRED"),
        Field("user_id", "STRING", "REQUIRED"),
        Field("event_type", "STRING", "REQUIRED"),
        Field("endpoint", "STRING"),
        Field("status_code", "INTEGER"),
        Field("latency_ms", "FLOAT"),
        Field("amount", "FLOAT"),
        Field("country", "STRING"),
    )
)


def _dump_to(path: str):
    def matcher(actual):
        with open(path, "wb") as handle:
            pickle.dump(list(actual), handle)

    return matcher


def _run(uri: str, tmp_path: Path, name: str) -> list[tuple[Message, float]]:
    """Runs the source in a pipeline and returns its (message, block timestamp) pairs."""
    out = tmp_path / f"{name}.pickle"
    with beam.Pipeline() as p:
        blocks = p | make_source(uri)
        stamped = blocks | beam.FlatMap(
            lambda block, ts=beam.DoFn.TimestampParam: [(m, float(ts)) for m in block]
        )
        assert_that(stamped, _dump_to(str(out)))
    with open(out, "rb") as handle:
        return pickle.load(handle)


def _outcome(message: Message) -> tuple[str | None, dict | None]:
    try:
        result = parse_message(message, EVENT_SCHEMA, EventTime(field="ts"))
    except RecordError as exc:
        return exc.reason, None
    return None, result.data


def test_exact_count_and_determinism(tmp_path: Path) -> None:
    uri = f"generator://events?count=1234&seed=7&malformed=0.1&late=0.1&start={START_ISO}"
    first = _run(uri, tmp_path, "first")
    second = _run(uri, tmp_path, "second")
    assert len(first) == 1234
    offsets = sorted(m.origin.offset for m, _ in first)
    assert offsets == list(range(1234))
    assert sorted(first, key=lambda x: x[0].origin.offset) == sorted(
        second, key=lambda x: x[0].origin.offset
    )
    other_seed = _run(uri.replace("seed=7", "seed=8"), tmp_path, "other")
    assert {m.payload for m, _ in other_seed} != {m.payload for m, _ in first}


def test_well_formed_events(tmp_path: Path) -> None:
    rate = 50.0
    results = _run(
        f"generator://events?count=500&rate={rate}&users=5&start={START_ISO}", tmp_path, "ok"
    )
    assert len(results) == 500
    for message, ts in results:
        reason, data = _outcome(message)
        assert reason is None, message
        index = message.origin.offset
        position = START + index / rate
        assert parse_timestamp(data["ts"]) == pytest.approx(position, abs=1e-3)
        # A block is at the event time of its first event.
        assert ts == pytest.approx(START + (index - index % BLOCK) / rate, abs=1e-3)
        assert data["user_id"] in {f"u{i}" for i in range(5)}
        assert message.origin.system == "generator"
        assert message.origin.message_id == data["event_id"]
        assert message.attributes == {"event_type": data["event_type"]}
        assert (data["amount"] is not None) == (data["event_type"] == "purchase")


def test_malformed_share_and_late_events(tmp_path: Path) -> None:
    n, malformed, late, rate = 4000, 0.2, 0.25, 100.0
    results = _run(
        f"generator://events?count={n}&malformed={malformed}&late={late}&rate={rate}"
        f"&start={START_ISO}",
        tmp_path,
        "mixed",
    )
    assert len(results) == n
    outcomes = [(m, *_outcome(m)) for m, _ in results]
    broken = sum(1 for _, reason, _ in outcomes if reason is not None)
    # Binomial(n, p): allow 6 standard deviations.
    sigma = math.sqrt(n * malformed * (1 - malformed))
    assert abs(broken - n * malformed) < 6 * sigma
    reasons = {reason for _, reason, _ in outcomes if reason is not None}
    assert reasons == {"invalid_json", "invalid_utf8", "schema", "bad_timestamp", "not_an_object"}

    shifts = []
    for message, reason, data in outcomes:
        if reason is not None:
            continue
        position = START + message.origin.offset / rate
        shifts.append(position - parse_timestamp(data["ts"]))
    on_time = [s for s in shifts if abs(s) < 2e-3]
    late_ones = [s for s in shifts if abs(s) >= 2e-3]
    assert late_ones, "late>0 must give late events"
    # Late events are 1 to 10 minutes older than their position; none are in the future.
    assert all(60 - 1e-3 <= s <= 600 + 1e-3 for s in late_ones)
    sigma = math.sqrt(len(shifts) * late * (1 - late))
    assert abs(len(late_ones) - len(shifts) * late) < 6 * sigma
    assert len(on_time) + len(late_ones) == len(shifts)


def test_no_late_events_without_late(tmp_path: Path) -> None:
    results = _run(f"generator://events?count=300&start={START_ISO}", tmp_path, "nolate")
    for message, _ in results:
        _, data = _outcome(message)
        position = START + message.origin.offset / 100.0
        assert parse_timestamp(data["ts"]) == pytest.approx(position, abs=1e-3)


def test_default_start_is_recent() -> None:
    source = make_source("generator://events?count=60&rate=1")
    assert time.time() - 3600 < source.start <= time.time()
    assert source.bounded and source.count == 60


def test_unbounded_without_count() -> None:
    source = make_source("generator://events")
    assert not source.bounded and source.count is None


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("generator://other", "events"),
        ("generator://events?colour=red", "unknown parameters"),
        ("generator://events?count=0", "count must be positive"),
        ("generator://events?count=-5", "count must be positive"),
        ("generator://events?count=ten", "count='ten'"),
        ("generator://events?rate=0", "rate must be positive"),
        ("generator://events?malformed=1.5", "malformed must be between 0 and 1"),
        ("generator://events?late=-0.1", "late must be between 0 and 1"),
        ("generator://events?users=0", "users must be positive"),
        ("generator://events?seed=x", "seed"),
        ("generator://events?start=someday", "start"),
    ],
)
def test_bad_params(uri: str, needle: str) -> None:
    with pytest.raises(EndpointError, match=needle):
        GeneratorSource(Endpoint.parse(uri))
