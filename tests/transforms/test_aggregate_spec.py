"""Tests of transforms.aggregate.spec: parsing and validating the aggregation spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transforms.aggregate.spec import (
    FUNCTIONS,
    OUTPUT_FIELDS,
    AggregateCall,
    AggregateSpec,
    SpecError,
    TriggerSpec,
    WindowSpec,
)

ISSUE_YAML = """\
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


def _check_issue_spec(spec: AggregateSpec) -> None:
    assert spec.event_time == "ts"
    assert spec.window == WindowSpec("tumbling", size=60.0)
    assert spec.window.step == 60.0
    assert spec.group_by == ("endpoint",)
    assert [(a.name, a.function) for a in spec.aggregates] == [
        ("requests", "count"),
        ("errors", "count_if"),
        ("avg_latency_ms", "mean"),
        ("max_latency_ms", "max"),
    ]
    assert spec.aggregates[0].argument is None
    assert spec.aggregates[1].argument is not None
    assert spec.aggregates[1].argument.text == "status_code >= 500"
    assert spec.aggregates[1].argument({"status_code": 503}) is True
    assert spec.aggregates[1].argument({"status_code": 200}) is False
    assert spec.aggregates[2].argument.text == "latency_ms"
    assert spec.having is not None and spec.having.text == "requests >= 1"
    assert spec.allowed_lateness == 0.0
    assert spec.trigger == TriggerSpec()
    assert spec.trigger.late and spec.trigger.accumulating and not spec.trigger.has_early
    assert spec.input_fields == {"endpoint", "status_code", "latency_ms"}


def test_issue_yaml_inline() -> None:
    _check_issue_spec(AggregateSpec.load(ISSUE_YAML))


def test_issue_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(ISSUE_YAML, encoding="utf-8")
    _check_issue_spec(AggregateSpec.load(str(path)))
    _check_issue_spec(AggregateSpec.load(path))


def test_json_text_and_file(tmp_path: Path) -> None:
    document = {
        "event_time": "ts",
        "window": {"type": "tumbling", "size": "60s"},
        "group_by": ["endpoint"],
        "aggregates": {
            "requests": "count()",
            "errors": "count_if(status_code >= 500)",
            "avg_latency_ms": "mean(latency_ms)",
            "max_latency_ms": "max(latency_ms)",
        },
        "having": "requests >= 1",
        "allowed_lateness": "0s",
    }
    text = json.dumps(document)
    _check_issue_spec(AggregateSpec.load(text))
    _check_issue_spec(AggregateSpec.load(json.dumps(document, indent=2)))
    path = tmp_path / "spec.json"
    path.write_text(text, encoding="utf-8")
    _check_issue_spec(AggregateSpec.load(path))
    _check_issue_spec(AggregateSpec.from_dict(document))


def test_one_line_inline_yaml() -> None:
    spec = AggregateSpec.load("{window: {type: fixed, size: 1m}, aggregates: {n: count()}}")
    assert spec.window == WindowSpec("tumbling", size=60.0)
    assert spec.group_by == ()


def test_missing_file() -> None:
    with pytest.raises(SpecError, match="cannot read spec file /nonexistent/spec.yaml"):
        AggregateSpec.load("/nonexistent/spec.yaml")


def test_invalid_yaml() -> None:
    with pytest.raises(SpecError, match="not valid YAML or JSON"):
        AggregateSpec.load("window: [unclosed\naggregates: {n: count()}")


@pytest.mark.parametrize("document", ["just text\n", "[1, 2]\n", "42\n"])
def test_not_a_mapping(document: str) -> None:
    with pytest.raises(SpecError, match="must be a mapping"):
        AggregateSpec.load(document)


def _spec(**overrides: object) -> dict:
    base: dict = {"window": {"type": "tumbling", "size": "60s"}, "aggregates": {"n": "count()"}}
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ({"type": "tumbling", "size": "60s"}, WindowSpec("tumbling", size=60)),
        ({"type": "fixed", "size": "2m"}, WindowSpec("tumbling", size=120)),
        ({"type": "FIXED", "size": 30}, WindowSpec("tumbling", size=30)),
        ({"type": "hopping", "size": "5m", "every": "1m"}, WindowSpec("hopping", 300, 60)),
        ({"type": "sliding", "size": "5m", "period": "1m"}, WindowSpec("hopping", 300, 60)),
        ({"type": "sliding", "size": "5m", "slide": "30s"}, WindowSpec("hopping", 300, 30)),
        ({"type": "hopping", "size": "1m", "every": "1m"}, WindowSpec("hopping", 60, 60)),
        ({"type": "session", "gap": "30m"}, WindowSpec("session", gap=1800)),
        ({"type": "sessions", "gap": "10s"}, WindowSpec("session", gap=10)),
    ],
)
def test_window_synonyms(window: dict, expected: WindowSpec) -> None:
    spec = AggregateSpec.from_dict(_spec(window=window))
    assert spec.window == expected


def test_window_steps() -> None:
    assert WindowSpec("tumbling", size=60).step == 60
    assert WindowSpec("hopping", size=300, every=60).step == 60
    assert WindowSpec("session", gap=30).step == 30
    assert WindowSpec("global").step == 0


def test_global_window_with_early_trigger() -> None:
    spec = AggregateSpec.from_dict(_spec(window={"type": "global"}, trigger={"early": 100}))
    assert spec.window == WindowSpec("global")
    assert spec.trigger.early_count == 100


@pytest.mark.parametrize(
    ("key", "value", "seconds"),
    [
        ("allowed_lateness", "2m", 120.0),
        ("lateness", "30s", 30.0),
        ("grace", "1h", 3600.0),
        ("allowed_lateness", 15, 15.0),
    ],
)
def test_lateness_synonyms(key: str, value: object, seconds: float) -> None:
    assert AggregateSpec.from_dict(_spec(**{key: value})).allowed_lateness == seconds


def test_lateness_defaults_to_zero() -> None:
    assert AggregateSpec.from_dict(_spec()).allowed_lateness == 0


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (None, TriggerSpec(0.0, 0, True, True)),
        ({"early": "10s"}, TriggerSpec(10.0, 0, True, True)),
        ({"early": 100}, TriggerSpec(0.0, 100, True, True)),
        ({"early": {"count": 5}}, TriggerSpec(0.0, 5, True, True)),
        ({"early": {"every": "1m"}}, TriggerSpec(60.0, 0, True, True)),
        ({"late": False}, TriggerSpec(0.0, 0, False, True)),
        ({"accumulation": "discarding"}, TriggerSpec(0.0, 0, True, False)),
        ({"accumulation": "Accumulating"}, TriggerSpec(0.0, 0, True, True)),
    ],
)
def test_trigger(trigger: dict | None, expected: TriggerSpec) -> None:
    spec = AggregateSpec.from_dict(_spec(trigger=trigger) if trigger else _spec())
    assert spec.trigger == expected


def test_group_by_forms() -> None:
    assert AggregateSpec.from_dict(_spec(group_by="endpoint")).group_by == ("endpoint",)
    assert AggregateSpec.from_dict(_spec(group_by=["a", "b"])).group_by == ("a", "b")
    assert AggregateSpec.from_dict(_spec(group_by=[])).group_by == ()


def test_every_function_parses() -> None:
    spec = AggregateSpec.from_dict(
        _spec(
            aggregates={
                "c": "count()",
                "ci": "count_if(x > 1 and y == 'a')",
                "s": "sum(amount * 1.2)",
                "m": "mean(amount)",
                "lo": "min(amount)",
                "hi": "max(user.age)",
                "d": "approx_count_distinct(user_id)",
                "p95": "approx_quantile(latency, 0.95)",
                "last": "latest(status)",
            }
        )
    )
    assert {a.function for a in spec.aggregates} == set(FUNCTIONS)
    by_name = {a.name: a for a in spec.aggregates}
    assert by_name["p95"].quantile == 0.95
    assert by_name["p95"].argument.text == "latency"
    assert by_name["s"].argument.text == "amount * 1.2"
    assert by_name["s"].argument({"amount": 10}) == pytest.approx(12.0)
    assert by_name["ci"].fields == {"x", "y"}
    assert by_name["c"].fields == frozenset()
    assert spec.input_fields == {"x", "y", "amount", "user", "user_id", "latency", "status"}


def test_check_fields() -> None:
    spec = AggregateSpec.from_dict(
        _spec(group_by=["endpoint"], aggregates={"e": "count_if(status_code >= 500)"})
    )
    spec.check_fields(["endpoint", "status_code", "other"])
    with pytest.raises(SpecError, match=r"\['status_code'\]"):
        spec.check_fields(["endpoint", "status"])
    with pytest.raises(SpecError, match=r"do not have: \['endpoint'\]"):
        spec.check_fields(["status_code"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aggregates": {"x": "median(a)"}}, r"aggregates\.x: unknown aggregate 'median'"),
        ({"aggregates": {"x": "count(a)"}}, r"count takes 0 argument\(s\), got 1"),
        ({"aggregates": {"x": "sum()"}}, r"sum takes 1 argument\(s\), got 0"),
        ({"aggregates": {"x": "sum(a, b)"}}, r"sum takes 1 argument\(s\), got 2"),
        ({"aggregates": {"x": "approx_quantile(a)"}}, r"approx_quantile takes 2 argument"),
        ({"aggregates": {"x": "approx_quantile(a, 1)"}}, "quantile must be between 0 and 1"),
        ({"aggregates": {"x": "approx_quantile(a, 1.5)"}}, "quantile must be between 0 and 1"),
        ({"aggregates": {"x": "approx_quantile(a, 0)"}}, "quantile must be between 0 and 1"),
        ({"aggregates": {"x": "approx_quantile(a, 0.0)"}}, "quantile must be between 0 and 1"),
        ({"aggregates": {"x": "approx_quantile(a, -0.5)"}}, "quantile must be a number"),
        ({"aggregates": {"x": "approx_quantile(a, q)"}}, "quantile must be a number"),
        ({"aggregates": {"x": "approx_quantile(a, '0.5')"}}, "quantile must be a number"),
        ({"aggregates": {"x": "sum(amount"}}, r"aggregates\.x: .* is not a call"),
        ({"aggregates": {"x": "amount"}}, r"aggregates\.x: 'amount' is not a call"),
        ({"aggregates": {"x": "stats.sum(a)"}}, "is not a call"),
        ({"aggregates": {"x": "sum(a=1)"}}, "is not a call"),
        ({"aggregates": {"x": 5}}, r"aggregates\.x: expected text"),
        ({"aggregates": {"x": "sum(len(a))"}}, r"aggregates\.x: .*Call is not allowed"),
        ({"aggregates": {"x": "count_if(a[0] > 1)"}}, r"aggregates\.x: .*Subscript"),
        ({"aggregates": {}}, "aggregates is required"),
        ({"aggregates": ["count()"]}, "aggregates is required"),
        ({"window": {"type": "hopping", "size": "1m", "every": "2m"}}, r"every \(120s\) must"),
        ({"window": {"type": "hopping", "size": "1m"}}, "hopping window needs every"),
        ({"window": {"type": "tumbling"}}, "tumbling window needs a positive size"),
        ({"window": {"type": "tumbling", "size": 0}}, "needs a positive size"),
        ({"window": {"type": "session"}}, "session window needs a positive gap"),
        ({"window": {"type": "weekly", "size": "7d"}}, "type 'weekly' is unknown"),
        ({"window": {"size": "1m"}}, "type None is unknown"),
        ({"window": "tumbling"}, "window: expected a mapping"),
        ({"window": {"type": "tumbling", "size": "60x"}}, "window size: expected a duration"),
        ({"window": {"type": "session", "gap": "-1m"}}, "session gap must not be negative"),
        ({"window": {"type": "tumbling", "size": "1m", "step": "1m"}}, r"unknown keys \['step'\]"),
        ({"window": {"type": "global"}}, "global window never closes"),
        ({"allowed_lateness": "-5s"}, "allowed_lateness must not be negative"),
        ({"lateness": -1}, "allowed_lateness must not be negative"),
        ({"grace": "soon"}, "allowed_lateness: expected a duration"),
        ({"having": "nope > 1"}, r"having: \['nope'\] are not output columns"),
        ({"having": "n > 1 and status > 2"}, r"having: \['status'\] are not output"),
        ({"having": "len(n) > 1"}, "having: .*Call is not allowed"),
        ({"group_by": ["n"]}, r"output columns \['n'\] are named twice"),
        ({"aggregates": {"window_start": "count()"}}, r"\['window_start'\] .* clash"),
        ({"aggregates": {"n": "count()", "timing": "count()"}}, r"\['timing'\]"),
        ({"group_by": ["pane_index"]}, r"\['pane_index'\]"),
        ({"group_by": ["a", "a"]}, r"\['a'\] are named twice"),
        ({"group_by": [1]}, "group_by: expected a list of field names"),
        ({"group_by": [""]}, "group_by: expected a list of field names"),
        ({"group_by": ["a", "meta.region"]}, "group_by takes top-level fields.*'meta.region'"),
        ({"windows": {}}, r"spec: unknown keys \['windows'\]"),
        ({"trigger": {"early": "10s", "final": True}}, r"trigger: unknown keys \['final'\]"),
        ({"trigger": {"early": {"count": 1, "size": 2}}}, r"trigger\.early: unknown keys"),
        ({"trigger": {"early": {"count": 5, "every": "1s"}}}, "either a time .* or a count"),
        ({"trigger": {"early": {"count": 0}}}, "count must be a positive integer"),
        ({"trigger": {"early": {"count": "5"}}}, "count must be a positive integer"),
        ({"trigger": {"early": 0}}, "count must be a positive integer"),
        ({"trigger": {"early": "often"}}, "trigger.early: expected a duration"),
        ({"trigger": {"accumulation": "adding"}}, "use accumulating or discarding"),
        ({"trigger": {"late": "yes"}}, "trigger.late: use true or false"),
        ({"trigger": "10s"}, "trigger: expected a mapping"),
    ],
)
def test_invalid_specs(overrides: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        AggregateSpec.from_dict(_spec(**overrides))


def test_window_is_required() -> None:
    with pytest.raises(SpecError, match="window is required"):
        AggregateSpec.from_dict({"aggregates": {"n": "count()"}})


def test_aggregates_are_required() -> None:
    with pytest.raises(SpecError, match="aggregates is required"):
        AggregateSpec.from_dict({"window": {"type": "tumbling", "size": 60}})


def test_constructor_needs_an_aggregate() -> None:
    with pytest.raises(SpecError, match="give at least one"):
        AggregateSpec(window=WindowSpec("tumbling", size=60), aggregates=())


def test_having_may_use_group_keys_and_output_fields() -> None:
    spec = AggregateSpec.from_dict(
        _spec(group_by=["endpoint"], having="n > 1 and endpoint != '/health' and is_final")
    )
    assert spec.having.fields == {"n", "endpoint", "is_final"}


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


def test_output_fields() -> None:
    assert OUTPUT_FIELDS == ("window_start", "window_end", "timing", "is_final", "pane_index")


def test_aggregate_call_parse_direct() -> None:
    call = AggregateCall.parse("p50", "  approx_quantile( latency_ms , 0.5 )  ")
    assert call == AggregateCall("p50", "approx_quantile", call.argument, 0.5)
    assert call.argument.text == "latency_ms"
    assert call.fields == {"latency_ms"}
