"""Route: records to named outputs by rule expressions, with a default output.

Rules, as YAML (or a mapping), in order::

    high_value: amount > 1000
    risky: profile.risk_score > 0.8 and country not in ("DE", "FR")

Input and outputs are `Block`s of `Record`s: each block is split into one block per output.
Each rule is an expression of `transforms.expressions` over the record's fields (a missing
field matches nothing). With ``mode="first"`` a record goes to the first rule it matches; with
``mode="all"`` to every rule it matches. A record that matches no rule goes to the default
output. A record a rule fails on (a string where the rule does arithmetic, say) goes to the
error output instead, as a dead-letter dict (step ``route``, reason ``rule_error``). Route never
fails and never drops: every record reaches at least one output (exactly one with ``first``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.timestamp import MIN_TIMESTAMP

from transforms.blocks import Block
from transforms.dead_letter import error_record
from transforms.expressions import Expression
from transforms.message import Record
from transforms.metrics import RULE_ERROR
from transforms.spec_yaml import load_yaml

__all__ = ["MODES", "STEP", "Route", "RouteRule", "RouteSpec", "tagged"]

MODES = ("first", "all")
STEP = "route"
# Not a valid output name, so no rule's output can take it.
_ERRORS = "rule-errors"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class RouteRule:
    """One named rule.

    Attributes:
        name: the output's name (letters, digits, underscores).
        when: the expression a record must make true.
    """

    name: str
    when: Expression


@dataclass(frozen=True)
class RouteSpec:
    """The rules, the default output's name and whether the first or all matches count.

    Raises:
        ValueError: no rules, a bad or repeated name, the default named like a rule, an unknown
            mode, an expression that does not compile (`ExpressionError`), or YAML text that
            holds aliases or does not parse (`transforms.spec_yaml.YamlError`).
    """

    rules: tuple[RouteRule, ...]
    default: str = "default"
    mode: str = "first"

    def __post_init__(self) -> None:
        if not self.rules:
            raise ValueError("route: give at least one rule, e.g. high_value: amount > 1000")
        names = [rule.name for rule in self.rules] + [self.default]
        for name in names:
            if not _NAME.fullmatch(name):
                raise ValueError(f"route: output name {name!r}: use letters, digits, underscores")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"route: output names must differ (the default too): {repeated}")
        if self.mode not in MODES:
            raise ValueError(f"route: mode {self.mode!r}: use one of {MODES}")

    @classmethod
    def parse(cls, rules: str | Mapping[str, str], default: str = "default", mode: str = "first"
              ) -> RouteSpec:  # fmt: skip
        """Reads ``{name: expression}`` in order, from a mapping or YAML text."""
        document: Any = load_yaml(rules) if isinstance(rules, str) else rules
        if not isinstance(document, Mapping):
            raise ValueError("route: rules must be a mapping of name: expression")
        parsed = []
        for name, text in document.items():
            if not isinstance(text, str):
                raise ValueError(f"route: rule {name!r} must be an expression, got {text!r}")
            parsed.append(RouteRule(str(name), Expression(text)))
        return cls(tuple(parsed), default, mode)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every output's name: the rules' in order, then the default."""
        return (*(rule.name for rule in self.rules), self.default)

    def routes(self, data: Mapping[str, Any]) -> list[str]:
        """Returns the outputs a record (its data dict) goes to; raises what a rule raises."""
        matched = []
        for rule in self.rules:
            if rule.when(data):
                matched.append(rule.name)
                if self.mode == "first":
                    break
        return matched or [self.default]


def tagged(block: list[Record], name: str, field: str) -> Block:
    """Returns the records of a block with ``field`` set to ``name`` (an alert's rule name)."""
    return Block(Record({**r.data, field: name}, r.origin, r.event_time) for r in block)


class _RouteFn(beam.DoFn):
    """A `Block` -> a `Block` per output its records go to; rule failures dead-lettered."""

    def __init__(self, spec: RouteSpec, pipeline: str) -> None:
        self._spec = spec
        self._pipeline = pipeline

    def process(
        self, block: list[Record], timestamp: Any = beam.DoFn.TimestampParam
    ) -> Iterator[TaggedOutput]:
        routes = self._spec.routes
        outputs: dict[str, Block] = {}
        for record in block:
            try:
                names = routes(record.data)
            except Exception as error:  # a rule failed on this record's values: dead-letter it
                yield TaggedOutput(_ERRORS, self._rule_error(record, error, timestamp))
                continue
            for name in names:
                routed = outputs.get(name)
                if routed is None:
                    outputs[name] = routed = Block()
                routed.append(record)
        for name, routed in outputs.items():
            yield TaggedOutput(name, routed)

    def _rule_error(self, record: Record, error: Exception, timestamp: Any) -> dict[str, Any]:
        event_time = record.event_time
        if event_time is None and timestamp > MIN_TIMESTAMP:
            event_time = float(timestamp)
        return error_record(
            record,
            pipeline=self._pipeline,
            step=STEP,
            reason=RULE_ERROR,
            error_type=type(error).__name__,
            error_message=f"a rule failed on the record: {type(error).__name__}: {error}",
            event_timestamp=event_time,
        )


class Route(beam.PTransform):
    """Sends each `Record` of a `Block` to the outputs its rules name (see this module).

    Returns ``(outputs, errors)``: a dict of output name -> PCollection of `Block`s of
    `Record`s (unchanged), one per rule and one for the default, in `RouteSpec.outputs` order;
    and the dead-letter dicts of the records a rule failed on (reason ``rule_error``, step
    ``route``).

    Args:
        spec: the rules.
        pipeline: the pipeline's name, for the dead-letter records.
    """

    def __init__(self, spec: RouteSpec, pipeline: str) -> None:
        super().__init__()
        self.spec = spec
        self._pipeline = pipeline

    def expand(
        self, blocks: beam.PCollection
    ) -> tuple[dict[str, beam.PCollection], beam.PCollection]:
        # Each output holds blocks (Beam then uses the block coder); the errors hold dicts.
        types = dict.fromkeys(self.spec.outputs, Block) | {_ERRORS: Any}
        rules = beam.ParDo(_RouteFn(self.spec, self._pipeline)).with_output_types(Any, **types)
        outputs = blocks | "Rules" >> rules.with_outputs(*self.spec.outputs, _ERRORS)
        return {name: outputs[name] for name in self.spec.outputs}, outputs[_ERRORS]
