"""No record stops an aggregation: hostile values, times and specs, on every path.

Each path (bounded input, a stream behind the lateness gate, the global window's, and sessions
on both inputs) gets the same hostile records among good ones: each hostile record becomes a
dead letter with step ``aggregate``, its original bytes and its reason; the good ones give the
rows; ``aggregated + dead-lettered = input``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import apache_beam as beam
import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from tests.support import COLLECTED, Collect
from transforms.aggregate.spec import AggregateSpec, SpecError
from transforms.aggregate.windowed import AGGREGATED, HAVING_FAILED, WindowedAggregate
from transforms.blocks import Block
from transforms.event_time import parse_timestamp
from transforms.expressions import MAX_DEPTH, MAX_SOURCE_CHARS, Expression, ExpressionError
from transforms.message import Message, Origin, Record
from transforms.metrics import counter_totals
from transforms.route import RouteSpec

pytestmark = pytest.mark.usefixtures("live_direct_runner")

START = 1_764_064_800.0
AGGREGATES = {
    "n": "count()",
    "total": "sum(v)",
    "round": "count_if(status_code % 100 == 0)",
    "long": "count_if(tag * 2000000000 == 'x')",
    "missing": "count_if(v is None)",
}
GOOD = [
    ({"k": "a", "v": 1, "status_code": 200}, START + 1),
    ({"k": "a", "v": 2, "status_code": 503}, START + 2),
    ({"k": "a", "status_code": "500"}, START + 3),  # a string in arithmetic: no match
    ({"k": "b", "v": 2.5, "status_code": 300}, START + 4),
]
# (data, event time, reason)
HOSTILE = [
    ({"k": "a", "v": 10**400, "status_code": 200}, START + 5, "bad_value"),
    ({"k": "a", "v": 1, "status_code": "5%"}, START + 6, "bad_value"),
    ({"k": "a", "v": 1, "status_code": "%0999999999d"}, START + 7, "expression_limit"),
    ({"k": "a", "v": 1, "tag": "a"}, START + 8, "expression_limit"),
    ({"k": "a", "v": float("inf")}, START + 9, "bad_value"),
    ({"k": "a", "v": 1}, parse_timestamp("9999-12-31T23:59:59Z"), "bad_timestamp"),
]
YEAR_ONE = ({"k": "a", "v": 1}, parse_timestamp("0001-01-01T00:00:30Z"), "bad_timestamp")


def spec(window: dict[str, Any], **extra: Any) -> AggregateSpec:
    return AggregateSpec.from_dict(
        {"window": window, "group_by": ["k"], "aggregates": AGGREGATES, **extra}
    )


def payload(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def record(data: dict[str, Any], event_time: float | None = None) -> Record:
    return Record(data, Message(payload(data), {}, Origin("test")), event_time)


def blocks(rows_in: list[tuple[dict[str, Any], float]]) -> list[TimestampedValue]:
    """The records in blocks of three, each at its oldest event time."""
    records = [record(d, t) for d, t in rows_in]
    return [
        TimestampedValue(Block(records[i : i + 3]), min(r.event_time for r in records[i : i + 3]))
        for i in range(0, len(records), 3)
    ]


def hostile_for(window: dict[str, Any]) -> list[tuple[dict[str, Any], float, str]]:
    return HOSTILE + ([YEAR_ONE] if window["type"] == "hopping" else [])


def check(
    tag: str,
    hostile: list[tuple[dict[str, Any], float, str]],
    counters: dict[str, int],
    more_good: int = 0,
) -> list[dict[str, Any]]:
    """Checks the dead letters and the balance; returns the rows (without pane fields)."""
    dead = COLLECTED.pop(tag + "dead", [])
    got = sorted((d["payload_bytes"], d["reason"], d["step"]) for d in dead)
    assert got == sorted((payload(data), reason, "aggregate") for data, _, reason in hostile)
    assert counters[AGGREGATED] + len(dead) == len(GOOD) + more_good + len(hostile)
    return [
        {k: v for k, v in row.data.items() if k in ("k", "n", "total", "round", "long", "missing")}
        for row in COLLECTED.pop(tag + "rows", [])
    ]


def run(build: Any, streaming: bool = False) -> dict[str, int]:
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=streaming))
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    return counter_totals(result.metrics())


def collect_both(tag: str, rows: beam.PCollection, dead: beam.PCollection) -> None:
    _ = rows | "Rows" >> beam.ParDo(Collect(tag + "rows"))
    _ = dead | "Dead" >> beam.ParDo(Collect(tag + "dead"))


EXPECTED_A = {"k": "a", "n": 3, "total": 3, "round": 1, "long": 0, "missing": 1}
EXPECTED_B = {"k": "b", "n": 1, "total": 2.5, "round": 1, "long": 0, "missing": 0}


def aggregate_on(
    p: beam.Pipeline, path: str, the_spec: Any, rows_in: list[tuple[Any, float]], **options: Any
) -> tuple[beam.PCollection, beam.PCollection]:
    """Aggregates ``rows_in`` on one path: ``bounded`` or ``streaming`` (a TestStream);
    returns ``(rows, dead letters)``, rows as `Record`s."""
    if path == "bounded":
        source = p | beam.Create(blocks(rows_in))
    else:
        stream = TestStream().advance_watermark_to(START)
        source = p | stream.add_elements(blocks(rows_in)).advance_watermark_to_infinity()
    rows, dead = source | WindowedAggregate(the_spec, "test", **options)
    return rows | "Records" >> beam.FlatMap(list), dead


WINDOWS = [{"type": "tumbling", "size": "60s"}, {"type": "hopping", "size": "120s", "every": "60s"}]


@pytest.mark.parametrize("window", WINDOWS, ids=["tumbling", "hopping"])
@pytest.mark.parametrize("path", ["bounded", "streaming"])
def test_hostile_records_are_dead_lettered_on_every_windowed_path(
    window: dict[str, Any], path: str
) -> None:
    the_spec = spec(window)
    hostile = hostile_for(window)
    rows_in = [(d, t) for d, t in GOOD] + [(d, t) for d, t, _ in hostile]
    tag = f"{path}-{window['type']}-{time.monotonic_ns()}"

    def build(p: beam.Pipeline) -> None:
        collect_both(tag, *aggregate_on(p, path, the_spec, rows_in))

    counters = run(build, streaming=path == "streaming")
    rows = check(tag, hostile, counters)
    windows_per_record = 2 if window["type"] == "hopping" else 1
    expected = [EXPECTED_A] * windows_per_record + [EXPECTED_B] * windows_per_record
    assert sorted(rows, key=lambda r: r["k"]) == expected


def test_global_window_with_a_count_trigger_dead_letters_hostile_records() -> None:
    the_spec = spec({"type": "global"}, trigger={"early": 2})
    tag = f"global-{time.monotonic_ns()}"
    rows_in = [(d, t) for d, t in GOOD] + [(d, t) for d, t, _ in HOSTILE]

    def build(p: beam.Pipeline) -> None:
        collect_both(tag, *aggregate_on(p, "bounded", the_spec, rows_in))

    # A global window has no bounds to write: the far event time is aggregated.
    hostile = [h for h in HOSTILE if h[2] != "bad_timestamp"]
    counters = run(build)
    check(tag, hostile, counters, more_good=1)


SESSION = {"type": "session", "gap": "30m"}


@pytest.mark.parametrize("path", ["bounded", "streaming"])
def test_hostile_records_are_dead_lettered_on_every_session_path(path: str) -> None:
    the_spec = spec(SESSION)
    rows_in = [(d, t) for d, t in GOOD] + [(d, t) for d, t, _ in HOSTILE]
    tag = f"sessions-{path}-{time.monotonic_ns()}"

    def build(p: beam.Pipeline) -> None:
        collect_both(tag, *aggregate_on(p, path, the_spec, rows_in))

    counters = run(build, streaming=path == "streaming")
    rows = check(tag, HOSTILE, counters)
    assert sorted(rows, key=lambda r: r["k"]) == [EXPECTED_A, EXPECTED_B]


def test_a_side_aggregation_counts_refused_records_instead() -> None:
    the_spec = spec(WINDOWS[0])
    tag = f"side-{time.monotonic_ns()}"
    rows_in = [(d, t) for d, t in GOOD] + [(d, t) for d, t, _ in HOSTILE]

    def build(p: beam.Pipeline) -> None:
        rows = aggregate_on(p, "bounded", the_spec, rows_in, dead_letter_late=False)
        collect_both(tag, *rows)

    counters = run(build)
    assert COLLECTED.pop(tag + "dead", []) == []
    assert counters["not_aggregated"] == len(HOSTILE)
    assert counters["not_aggregated.bad_timestamp"] == 1
    assert counters[AGGREGATED] == len(GOOD)


def test_a_failing_having_counts_and_leaves_the_row_out() -> None:
    the_spec = spec(WINDOWS[0], having="k * 2000000000 == 'x' or n > 0")
    tag = f"having-{time.monotonic_ns()}"

    def build(p: beam.Pipeline) -> None:
        collect_both(tag, *aggregate_on(p, "bounded", the_spec, GOOD))

    counters = run(build)
    assert COLLECTED.pop(tag + "rows", []) == []
    assert counters[HAVING_FAILED] == 2


@pytest.mark.parametrize("path", ["bounded", "streaming"])
def test_sums_and_means_beyond_a_row_are_null_and_counted(path: str) -> None:
    the_spec = AggregateSpec.from_dict(
        {"window": WINDOWS[0], "group_by": ["k"],
         "aggregates": {"n": "count()", "total": "sum(v)", "avg": "mean(v)"}}
    )  # fmt: skip
    biggest = (1 << 63) - 1
    rows_in = [
        ({"k": "floats", "v": 1e308}, START + 1),
        ({"k": "floats", "v": 1e308}, START + 2),  # the float total overflows
        ({"k": "ints", "v": biggest}, START + 3),
        ({"k": "ints", "v": 1}, START + 4),  # one past the 64-bit integers
        ({"k": "fits", "v": biggest}, START + 5),
        ({"k": "fits", "v": -1}, START + 6),
    ]
    tag = f"overflow-{path}-{time.monotonic_ns()}"
    counters = run(
        lambda p: collect_both(tag, *aggregate_on(p, path, the_spec, rows_in)),
        streaming=path == "streaming",
    )
    rows = {row.data["k"]: row.data for row in COLLECTED.pop(tag + "rows", [])}
    assert COLLECTED.pop(tag + "dead", []) == []
    assert {k: (r["n"], r["total"], r["avg"]) for k, r in rows.items()} == {
        "floats": (2, None, None),
        "ints": (2, None, None),
        "fits": (2, biggest - 1, (biggest - 1) / 2),
    }
    assert counters["aggregate_overflows"] == 4  # two aggregates of two rows


@pytest.mark.parametrize("path", ["bounded", "streaming"])
def test_keys_true_and_1_are_two_groups(path: str) -> None:
    the_spec = AggregateSpec.from_dict(
        {"window": WINDOWS[0], "group_by": ["k"], "aggregates": {"n": "count()"}}
    )
    keys = [True, 1, 1, False, 0, "1", True]
    rows_in = [({"k": key}, START + i) for i, key in enumerate(keys)]
    tag = f"bool-keys-{path}-{time.monotonic_ns()}"
    run(
        lambda p: collect_both(tag, *aggregate_on(p, path, the_spec, rows_in)),
        streaming=path == "streaming",
    )
    rows = COLLECTED.pop(tag + "rows", [])
    got = sorted((type(r.data["k"]).__name__, str(r.data["k"]), r.data["n"]) for r in rows)
    assert got == [
        ("bool", "False", 1), ("bool", "True", 2), ("int", "0", 1), ("int", "1", 2),
        ("str", "1", 1),
    ]  # fmt: skip


# The 419-byte spec whose having nests aliases: nine levels of nine, 9**9 items once expanded.
ALIAS_BOMB = """\
window: {type: tumbling, size: 60s}
aggregates: {n: count()}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
having: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_the_alias_bomb_is_refused_before_anything_is_built() -> None:
    assert len(ALIAS_BOMB.encode()) <= 420
    started = time.monotonic()
    with pytest.raises(SpecError, match="aliases"):
        AggregateSpec.load(ALIAS_BOMB)
    with pytest.raises(ValueError, match="aliases"):
        RouteSpec.parse("x: &x a > 1\ny: *x\n")
    assert time.monotonic() - started < 5
    # Anchors alone stay harmless and readable.
    assert yaml.safe_load("a: &x 1") == {"a": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a + " * MAX_SOURCE_CHARS + "a", "characters"),
        ("-" * (MAX_DEPTH + 5) + "a", "nested too deeply"),
        ("(" * 300 + "a" + ")" * 300, "syntax error"),
        ("a is b", "'is' with anything but None"),
        ("a.b[0] > 1", "Subscript"),
        ("f'{a}'", "JoinedStr"),
    ],
)
def test_expressions_are_bounded_and_refused_with_a_spec_error(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        Expression(text)
    with pytest.raises(SpecError, match=message):
        AggregateSpec.from_dict(
            {"window": {"type": "tumbling", "size": 60}, "aggregates": {"n": f"count_if({text})"}}
        )


@pytest.mark.parametrize(
    ("text", "record", "reason"),
    [
        ("'a' * 2000000000", {}, "expression_limit"),
        ("s * n", {"s": "ab", "n": 10**6}, "expression_limit"),
        ("'%999999999d' % n", {"n": 1}, "expression_limit"),
        ("'%.999999999f' % n", {"n": 1.5}, "expression_limit"),
        ("'%*d' % (999999999, 1)", {}, "expression_limit"),
        ("s + s", {"s": "x" * 60_000}, "expression_limit"),
        ("n * n * n", {"n": 10**400}, "expression_limit"),
        ("s % 100", {"s": "5%"}, "bad_value"),
    ],
)
def test_evaluation_is_bounded_per_record(text: str, record: dict, reason: str) -> None:
    with pytest.raises(Exception) as caught:
        Expression(text)(record)
    assert getattr(caught.value, "reason", None) == reason


def test_is_none_and_is_not_none() -> None:
    assert Expression("a is None")({}) is True
    assert Expression("a is not None")({"a": 0}) is True
    assert Expression("a is null or a is not None and a > 1")({"a": 0}) is False
    assert Expression("'%5d|' % n")({"n": 42}) == "   42|"
