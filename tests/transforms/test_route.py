"""Tests of transforms.route: every output, first match or all matches, the default.

Route takes blocks of records and splits each into a block per output.
"""

from __future__ import annotations

import json
import uuid

import apache_beam as beam
import pytest

from tests.support import COLLECTED, Collect
from transforms.blocks import Block
from transforms.expressions import ExpressionError
from transforms.message import Record
from transforms.route import Route, RouteSpec

RULES = """\
high_value: amount > 1000
risky: profile.risk_score > 0.8
foreign: country not in ("DE", "FR")
"""

RECORDS = [
    {"n": 1, "amount": 5000, "profile": {"risk_score": 0.9}, "country": "US"},  # all three
    {"n": 2, "amount": 5000, "profile": {"risk_score": 0.1}, "country": "DE"},  # high_value
    {"n": 3, "amount": 10, "profile": {"risk_score": 0.95}, "country": "FR"},  # risky
    {"n": 4, "amount": 10, "country": "JP"},  # foreign (no profile: risky cannot match)
    {"n": 5, "amount": 10, "profile": {"risk_score": 0.2}, "country": "DE"},  # none
    {"n": 6, "amount": None, "profile": None},  # country missing: nothing matches
]


def blocks(datas: list[dict]) -> list[Block]:
    """The records of ``datas`` in blocks of two."""
    return [Block(Record(data) for data in datas[start : start + 2]) for start in (0, 2, 4)]


def collect(outputs: dict[str, beam.PCollection], run: str) -> None:
    """Collects the records of each output's blocks under ``run`` and the output's name."""
    for name, pcoll in outputs.items():
        records = pcoll | f"Records of {name}" >> beam.FlatMap(list)
        _ = records | f"Collect {name}" >> beam.ParDo(Collect(f"{run}{name}"))


def route(spec: RouteSpec) -> dict[str, list[int]]:
    run = uuid.uuid4().hex
    with beam.Pipeline() as pipeline:
        outputs, errors = pipeline | beam.Create(blocks(RECORDS)) | Route(spec, "test")
        assert list(outputs) == list(spec.outputs)
        assert {pcoll.element_type for pcoll in outputs.values()} == {Block}
        _ = errors | "Collect errors" >> beam.ParDo(Collect(f"{run}errors"))
        collect(outputs, run)
    assert COLLECTED.pop(f"{run}errors", []) == []
    return {
        name: sorted(r.data["n"] for r in COLLECTED.pop(f"{run}{name}", []))
        for name in spec.outputs
    }


def test_first_match_wins_and_every_output_gets_its_records() -> None:
    got = route(RouteSpec.parse(RULES, default="normal"))
    assert got == {"high_value": [1, 2], "risky": [3], "foreign": [4], "normal": [5, 6]}


def test_all_matches_send_a_record_to_each_rule_it_matches() -> None:
    got = route(RouteSpec.parse(RULES, default="normal", mode="all"))
    assert got == {"high_value": [1, 2], "risky": [1, 3], "foreign": [1, 4], "normal": [5, 6]}


def test_rules_keep_their_order_and_routes_follow_it() -> None:
    spec = RouteSpec.parse({"b": "x > 1", "a": "x > 0"})
    assert spec.outputs == ("b", "a", "default")
    assert spec.routes({"x": 2}) == ["b"]
    assert spec.routes({"x": 1}) == ["a"]
    assert spec.routes({}) == ["default"]


@pytest.mark.parametrize(
    ("rules", "kwargs", "message"),
    [
        ("{}", {}, "at least one rule"),
        ("a: x > 1", {"default": "a"}, "must differ"),
        ("a-b: x > 1", {}, "letters"),
        ("a: x > 1", {"mode": "any"}, "mode"),
        ("a: 3", {}, "must be an expression"),
        ("- a", {}, "mapping"),
    ],
)
def test_bad_rules_fail_at_construction(rules: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RouteSpec.parse(rules, **kwargs)


def test_unsafe_expressions_are_refused() -> None:
    with pytest.raises(ExpressionError, match="not allowed"):
        RouteSpec.parse("a: __import__('os').system('true')")


def test_a_record_a_rule_fails_on_is_dead_lettered_and_the_others_are_routed() -> None:
    # A %-format of a profile without the key it names raises KeyError.
    spec = RouteSpec.parse({"gold": '"%(tier)s" % profile == "gold"'})
    records = [{"profile": {"tier": "gold"}}, {"profile": {}}, {"profile": {"tier": "base"}}]
    run = uuid.uuid4().hex
    with beam.Pipeline() as pipeline:
        outputs, errors = pipeline | beam.Create(blocks(records)) | Route(spec, "p")
        collect(outputs, run)
        _ = errors | "Collect errors" >> beam.ParDo(Collect(f"{run}errors"))
    assert [r.data for r in COLLECTED.pop(f"{run}gold")] == [records[0]]
    assert [r.data for r in COLLECTED.pop(f"{run}default")] == [records[2]]
    [dead] = COLLECTED.pop(f"{run}errors")
    assert (dead["step"], dead["reason"], dead["pipeline"]) == ("route", "rule_error", "p")
    assert json.loads(dead["payload_bytes"]) == records[1]
