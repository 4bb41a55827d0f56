"""Hostile records through every catalog pipeline, bounded and streamed: nothing stops a run.

Hypothesis draws batches of user-shaped events (field names the built-in generator never uses)
in which any field a pipeline touches may hold a hostile value: huge and tiny numbers, NaN and
infinities, times at and beyond every edge, wrong kinds, long strings, mixed key types, and
lines that are not JSON objects at all. Each batch runs through the pipeline twice: from a file
(the bounded path) and from a `TestStream` that delivers one message per element, as Pub/Sub,
Kafka and Kinesis do (the streaming path). Every run must finish, balance exactly
(read = delivered + dead-lettered + dropped), dead-letter only lines of its input (with their
original bytes), and never dead-letter a well-formed event.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import apache_beam as beam
import msgspec
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream
from apache_beam.utils.timestamp import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.catalog import get_pipeline
from pipelines.framework.options import parse_options
from pipelines.framework.run import RunReport, run_pipeline
from transforms.blocks import Batch
from transforms.dead_letter import error_record
from transforms.io.base import Source
from transforms.io.endpoint import Endpoint
from transforms.message import Message, Origin
from transforms.metrics import READ, counter_totals

pytestmark = pytest.mark.usefixtures("live_direct_runner")

T0 = 1_780_000_000  # 2026-05-28, whole seconds
# Batches per pipeline and path (each holds up to BATCH lines, about half of them hostile);
# HOSTILE_EXAMPLES=50 explores further.
EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "5"))
BATCH = 120

# ---------------------------------------------------------------------------------------------
# What a user's events look like, and what can go wrong in each field.

HUGE_INT = 10**400
EDGE_TIMES = [
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999-12:00", "10000-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-05-28 10:00:00", "yesterday", "",
    0, -1, -(2**63), 2**63, 2**64, HUGE_INT, 1e300, -1e300, 1e-300, 253402300799999,
    253402300800000, 1e20, math.nan, math.inf, -math.inf, True, None, [], {},
]  # fmt: skip
HOSTILE_SCALARS = [
    HUGE_INT, -HUGE_INT, 2**63, -(2**63) - 1, 2**64, 1e308, -1e308, 5e-324, -0.0, math.nan,
    math.inf, -math.inf, True, False, None, "", "zed", "x" * 20_000, "\u0000", "\ud800", "é" * 50,
    "1e999", "NaN", "12", [], [1, [2]], {}, {"a": {"b": None}},
]  # fmt: skip

good_times = st.integers(0, 3600).map(lambda s: T0 + s)
time_forms = st.sampled_from(["iso", "iso_offset", "millis", "seconds"])


def format_time(epoch: int, form: str) -> Any:
    """An event time in one of the forms users send."""
    import datetime as dt

    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    if form == "iso":
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == "iso_offset":
        return moment.astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat()
    if form == "millis":
        return epoch * 1000
    return epoch


@st.composite
def good_event(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed event of a user's own shape (not the generator's)."""
    return {
        "ts": format_time(draw(good_times), draw(time_forms)),
        "user": draw(st.sampled_from(["ana", "bo", "chen", "dee"])),
        "path": draw(st.sampled_from(["/", "/cart", "/pay"])),
        "status": draw(st.sampled_from([200, 201, 404, 500, 503])),
        "latency": draw(st.floats(0.1, 5000, allow_nan=False)),
        "amount": draw(st.integers(1, 1000)),
        "txn": draw(st.uuids()).hex,
    }


@st.composite
def hostile_event(draw: st.DrawFn) -> dict[str, Any]:
    """A user's event with one to three fields missing, hostile or of the wrong kind."""
    event = draw(good_event())
    for name in draw(st.lists(st.sampled_from(sorted(event)), min_size=1, max_size=3)):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            event.pop(name, None)
        elif name == "ts":
            event[name] = draw(st.sampled_from(EDGE_TIMES))
        else:
            event[name] = draw(st.sampled_from(HOSTILE_SCALARS))
    return event


NOT_OBJECTS = [b"{broken", b"[]", b"42", b'"text"', b"null", b"\xff\xfe\x00", b'{"a": 1}{"b": 2}',
               b"{" * 5_000, b'{"ts": 1, "ts": "x"}', b"\x00" * 10]  # fmt: skip


def encode(event: dict[str, Any]) -> bytes:
    """One JSON line; NaN and infinities are written as JSON5 literals, as some producers do."""
    return json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def event_batch(draw: st.DrawFn) -> tuple[list[bytes], set[bytes]]:
    """Lines to read, and those that are well-formed events."""
    good = [encode(e) for e in draw(st.lists(good_event(), min_size=5, max_size=BATCH // 2))]
    bad = [encode(e) for e in draw(st.lists(hostile_event(), max_size=BATCH // 2))]
    bad += draw(st.lists(st.sampled_from(NOT_OBJECTS), max_size=5))
    lines = draw(st.permutations(good + bad))
    return lines, set(good)


@st.composite
def change_batch(draw: st.DrawFn) -> tuple[list[bytes], set[bytes]]:
    """Debezium change events for one table, some with hostile keys, values or envelopes."""
    lines: list[bytes] = []
    good: set[bytes] = set()
    for n in range(draw(st.integers(5, BATCH // 2))):
        key = draw(st.integers(1, 8))
        after = {"id": key, "name": draw(st.text(max_size=8)), "balance": draw(st.integers())}
        change: dict[str, Any] = {
            "before": None,
            "after": after,
            "op": draw(st.sampled_from(["c", "u", "r"])),
            "ts_ms": (T0 + n) * 1000,
            "source": {"db": "shop", "schema": "public", "table": "accounts", "lsn": n},
        }
        if draw(st.booleans()):
            line = json.dumps(change).encode()
            lines.append(line)
            good.add(line)
            continue
        spoil = draw(st.sampled_from(["key", "op", "ts", "after", "source", "value"]))
        if spoil == "key":
            after["id"] = draw(st.sampled_from([None, [1], {"k": 1}, math.nan, "", HUGE_INT]))
        elif spoil == "op":
            change["op"] = draw(st.sampled_from(["x", None, 1, "d"]))
        elif spoil == "ts":
            change["ts_ms"] = draw(st.sampled_from(EDGE_TIMES))
        elif spoil == "after":
            change["after"] = draw(st.sampled_from([None, [], "row", 7]))
        elif spoil == "source":
            change["source"] = draw(st.sampled_from([None, {}, {"table": 5}, "src"]))
        else:
            after["balance"] = draw(st.sampled_from(HOSTILE_SCALARS))
        lines.append(json.dumps(change).encode("utf-8", "surrogatepass"))
    lines += draw(st.lists(st.sampled_from(NOT_OBJECTS), max_size=3))
    return lines, good


@st.composite
def dead_letter_batch(draw: st.DrawFn) -> tuple[list[bytes], set[bytes]]:
    """Dead letters of hostile events as a file dead-letter sink writes them, and hostile lines
    that are not dead letters (a field missing or of the wrong kind, not JSON objects)."""
    good: list[bytes] = []
    for event in draw(st.lists(st.one_of(good_event(), hostile_event()), min_size=5,
                               max_size=BATCH // 2)):  # fmt: skip
        letter = error_record(
            Message(encode(event), draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5),
                                                        max_size=2)), Origin("test")),
            pipeline="events_to_bigquery", step="parse", reason="schema", error_type="E",
            error_message="", retry_count=draw(st.integers(0, 4)),
        )  # fmt: skip
        good.append(msgspec.json.encode(letter, enc_hook=str))
    bad = []
    for line in draw(st.lists(st.sampled_from(good), max_size=10)):
        letter = json.loads(line)
        names = ["pipeline", "payload_bytes", "attributes", "retry_count", "source"]
        letter[draw(st.sampled_from(names))] = draw(
            st.sampled_from([None, "not base64!", {"a": "b"}, -1, math.nan, [], {"line": 1}])
        )
        bad.append(encode(letter))
    bad += draw(st.lists(st.sampled_from(NOT_OBJECTS), max_size=5))
    lines = draw(st.permutations(good + [line for line in bad if line not in good]))
    return lines, set(good)


# ---------------------------------------------------------------------------------------------
# Each pipeline with only the options it needs for such events.

SPEC = """
event_time: ts
window: {type: hopping, size: 120s, every: 60s}
group_by: [path]
aggregates:
  requests: count()
  errors: count_if(status >= 500)
  odd: count_if(status % 100 == 0)
  total: sum(amount)
  avg_latency: mean(latency)
  p95: approx_quantile(latency, 0.95)
  top: max(latency)
  users: approx_count_distinct(user)
having: requests >= 1
"""


@dataclass(frozen=True)
class Case:
    """A catalog pipeline, the options it needs, and what it is fed."""

    name: str
    options: Callable[[Path], dict[str, str]]
    batches: Callable[[], st.SearchStrategy[tuple[list[bytes], set[bytes]]]] = event_batch


def _metrics_options(folder: Path) -> dict[str, str]:
    spec = folder / "spec.yaml"
    spec.write_text(SPEC)
    return {"spec": str(spec)}


def _enrich_options(folder: Path) -> dict[str, str]:
    profiles = folder / "profiles.jsonl"
    profiles.write_text(
        '{"user": "ana", "typical_amount": 10, "risk_score": 0.9}\n'
        '{"user": "bo", "typical_amount": 2.5, "risk_score": 0.1}\n'
        '{"user": "zed", "typical_amount": "lots", "risk_score": [1]}\n'
    )
    return {
        "profiles": f"file://{profiles}?key={{user}}",
        "alert_sink": f"file://{folder}/alerts",
        "dedup_key": "txn",
        "rules": '{big: "amount > 3 * profile.typical_amount", risky: "profile.risk_score > 0.8"}',
        "burst_count": "2",
        "burst_window": "1m",
        "burst_key": "user",
    }


CASES = [
    Case(
        "events_to_bigquery",
        lambda d: {
            "counts_sink": f"file://{d}/counts",
            "counts_window": "1m",
            "counts_group_by": "path",
        },
    ),  # fmt: skip
    Case("metrics_to_redis", _metrics_options),
    Case("sessionize", lambda d: {"key_field": "user", "gap": "10m"}),
    Case("enrich_and_alert", _enrich_options),
    Case("cdc_replicate", lambda d: {"format": "debezium", "key_columns": "id"}, change_batch),
    Case(
        "dlq_replay",
        lambda d: {"parked": f"file://{d}/parked", "ledger": "none"},
        dead_letter_batch,
    ),  # fmt: skip
]


def argv(case: Case, source: Path, folder: Path) -> list[str]:
    values = {
        "source": f"file://{source}",
        "sink": f"file://{folder}/out",
        "dead_letter": f"file://{folder}/dlq",
        "schema": "none",
        **case.options(folder),
    }
    if not any(option.name == "schema" for option in get_pipeline(case.name).options):
        del values["schema"]
    return [f"--{key}={value}" for key, value in values.items()]


# ---------------------------------------------------------------------------------------------
# The streamed path: the same lines as one message each, on a TestStream.


class StreamSource(Source):
    """Test-only source: ``lines`` as one `Message` each, on a `TestStream` (streaming).

    As every stream's read, it ends with `Batch`: its output is `Block`s of what a bundle holds.
    """

    bounded = False

    def __init__(self, lines: list[bytes]) -> None:
        super().__init__(Endpoint.parse("file:///stream.jsonl"))
        self.lines = lines

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        stream = test_stream.TestStream().advance_watermark_to(T0 - 3600)
        messages = [
            Message(line, {}, Origin("test", path="/stream.jsonl", line=n + 1))
            for n, line in enumerate(self.lines)
        ]
        # Several bundles; the watermark moves on but stays before every well-formed event.
        for start in range(0, len(messages), 25):
            stream = stream.add_elements([
                beam.window.TimestampedValue(message, Timestamp(T0 + start))
                for message in messages[start : start + 25]
            ]).advance_watermark_to(T0 - 3600 + start + 1)  # fmt: skip
        # Processing time moves on too, so that processing-time triggers and timers fire.
        stream = stream.advance_processing_time(3600).advance_watermark_to_infinity()
        return pbegin | stream.advance_processing_time(3600) | "Blocks" >> Batch()


def run_streamed(case: Case, args: list[str], lines: list[bytes]) -> RunReport:
    """Builds the pipeline as the command line does for a Pub/Sub source, then reads ``lines``.

    The options name a Pub/Sub subscription, so that the pipeline is configured as for any
    stream; the source itself is then replaced by a `StreamSource` of the same lines.
    """
    spec = get_pipeline(case.name)
    args = [arg for arg in args if not arg.startswith("--source=")]
    args.append("--source=pubsub://projects/local-project/subscriptions/hostile")
    values, _ = parse_options(f"pipelines run {case.name}", spec.description, spec.options, args)
    config = spec.configure(values)
    config = replace(config, spine=replace(config.spine, source=StreamSource(lines)))
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    spec.build(pipeline, config)
    result = pipeline.run()
    result.wait_until_finish()
    return RunReport(case.name, str(result.state), counter_totals(result.metrics()),
                     delivered=spec.delivered)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# What must hold.


def dead_letters(folder: Path) -> list[tuple[bytes, str]]:
    """``(original payload, "step/reason: message")`` of every dead letter written."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            for line in path.read_text().splitlines():
                letter = json.loads(line)
                why = f"{letter['step']}/{letter['reason']}: {letter['error_message'][:200]}"
                found.append((base64.b64decode(letter["payload_bytes"]), why))
    return found


def check(report: RunReport, lines: list[bytes], good: set[bytes], dlq: Path) -> None:
    assert report.count(READ) == len(lines), report.render()
    assert report.balanced, report.render()
    letters = dead_letters(dlq)
    inputs = set(lines)
    strangers = [(p[:80], why) for p, why in letters if p not in inputs]
    assert not strangers, f"dead letters that are not input lines: {strangers}"
    wrongly = [(p[:200], why) for p, why in letters if p in good]
    assert not wrongly, f"well-formed events dead-lettered: {wrongly}"


def explore(case: Case, streamed: bool, tmp_path_factory: pytest.TempPathFactory) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(batch=case.batches())
    def one_batch(batch: tuple[list[bytes], set[bytes]]) -> None:
        lines, good = batch
        folder = tmp_path_factory.mktemp(case.name)
        source = folder / "in.jsonl"
        source.write_bytes(b"\n".join(lines) + b"\n")
        args = argv(case, source, folder)
        if streamed:
            report = run_streamed(case, args, lines)
        else:
            report = run_pipeline(get_pipeline(case.name), args)
        check(report, lines, good, folder / "dlq")

    one_batch()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_records_from_a_file(case: Case, tmp_path_factory: pytest.TempPathFactory) -> None:
    explore(case, streamed=False, tmp_path_factory=tmp_path_factory)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_records_from_a_stream(
    case: Case, tmp_path_factory: pytest.TempPathFactory
) -> None:
    explore(case, streamed=True, tmp_path_factory=tmp_path_factory)
