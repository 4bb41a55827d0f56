"""The declarative spec of a windowed aggregation, validated when it is built.

A spec, as YAML (or JSON, or a dict)::

    event_time: ts            # field holding the event time (ISO-8601 or epoch s/ms/us)
    window: {type: tumbling, size: 60s}
    group_by: [endpoint]
    aggregates:
      requests: count()
      errors: count_if(status_code >= 500)
      avg_latency_ms: mean(latency_ms)
      p95_latency_ms: approx_quantile(latency_ms, 0.95)
    having: requests >= 1
    allowed_lateness: 0s
    trigger: {early: 10s, late: true, accumulation: accumulating}

Windows: ``tumbling`` (``fixed``) with ``size``; ``hopping`` (``sliding``) with ``size`` and
``every`` (``period``, ``slide``); ``session`` (``sessions``) with ``gap``; ``global`` with an
early trigger for running totals. ``allowed_lateness`` also reads ``lateness`` and ``grace``.
Trigger: ``early`` fires EARLY panes every N whole seconds of processing time (``10s``) or every
N elements
(``100``, or ``{count: 100}``); ``late`` fires a LATE pane per late element within the lateness
(default on); ``accumulation`` is ``accumulating`` (each pane holds everything so far, the
default) or ``discarding`` (each pane holds only what is new).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transforms.durations import parse_duration
from transforms.expressions import Expression, ExpressionError, parse_bounded
from transforms.spec_yaml import YamlError, load_yaml

__all__ = [
    "FUNCTIONS",
    "OUTPUT_FIELDS",
    "AggregateCall",
    "AggregateSpec",
    "SpecError",
    "TriggerSpec",
    "WindowSpec",
]

# function name -> (number of arguments, what the argument is)
FUNCTIONS = {
    "count": 0,
    "count_if": 1,
    "sum": 1,
    "mean": 1,
    "min": 1,
    "max": 1,
    "approx_count_distinct": 1,
    "approx_quantile": 2,
    "latest": 1,
}
OUTPUT_FIELDS = ("window_start", "window_end", "timing", "is_final", "pane_index")
_WINDOW_TYPES = {
    "tumbling": "tumbling", "fixed": "tumbling",
    "hopping": "hopping", "sliding": "hopping",
    "session": "session", "sessions": "session",
    "global": "global",
}  # fmt: skip


class SpecError(ValueError):
    """A spec that cannot work; the message says what to fix."""


def _known(mapping: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(str(key) for key in set(mapping) - set(allowed))
    if unknown:
        raise SpecError(f"{where}: unknown keys {unknown}; known: {sorted(allowed)}")


def _first(mapping: Mapping[str, Any], *names: str) -> Any:
    return next((mapping[name] for name in names if name in mapping), None)


def _duration(value: Any, what: str) -> float:
    try:
        return parse_duration(value, what)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


@dataclass(frozen=True)
class WindowSpec:
    """Which windows records fall into.

    Attributes:
        type: ``tumbling``, ``hopping``, ``session`` or ``global``.
        size: window length in seconds (tumbling, hopping).
        every: how often a hopping window starts, in seconds.
        gap: the inactivity that closes a session, in seconds.
    """

    type: str
    size: float = 0.0
    every: float = 0.0
    gap: float = 0.0

    def __post_init__(self) -> None:
        if self.type in ("tumbling", "hopping") and self.size <= 0:
            raise SpecError(f"window: a {self.type} window needs a positive size, e.g. size: 60s")
        if self.type == "hopping":
            if self.every <= 0:
                raise SpecError("window: a hopping window needs every (how often one starts)")
            if self.every > self.size:
                raise SpecError(
                    f"window: every ({self.every:g}s) must not exceed size ({self.size:g}s); "
                    "use a tumbling window for windows that do not overlap"
                )
        if self.type == "session" and self.gap <= 0:
            raise SpecError("window: a session window needs a positive gap, e.g. gap: 30m")

    @classmethod
    def parse(cls, value: Any) -> WindowSpec:
        """Reads ``{type: tumbling, size: 60s}`` and its synonyms."""
        if not isinstance(value, Mapping):
            raise SpecError("window: expected a mapping such as {type: tumbling, size: 60s}")
        _known(value, ("type", "size", "every", "period", "slide", "gap"), "window")
        kind = _WINDOW_TYPES.get(str(value.get("type", "")).lower())
        if kind is None:
            raise SpecError(
                f"window: type {value.get('type')!r} is unknown; use tumbling, hopping, "
                "session or global"
            )
        every = _first(value, "every", "period", "slide")
        return cls(
            type=kind,
            size=_duration(value["size"], "window size") if "size" in value else 0.0,
            every=_duration(every, "window every") if every is not None else 0.0,
            gap=_duration(value["gap"], "session gap") if "gap" in value else 0.0,
        )

    @property
    def step(self) -> float:
        """The granularity at which windows of this kind close, in seconds (0 for global)."""
        return {"tumbling": self.size, "hopping": self.every, "session": self.gap}.get(
            self.type, 0.0
        )


@dataclass(frozen=True)
class TriggerSpec:
    """When panes fire.

    Attributes:
        early_seconds: fire EARLY panes every this many seconds of processing time (0: off).
        early_count: fire EARLY panes every this many elements (0: off).
        late: fire a LATE pane for each element that arrives late but within the lateness;
            ``False`` treats the lateness as 0 (records after the on-time pane are late).
        accumulating: panes hold everything so far (else only what is new since the last).
    """

    early_seconds: float = 0.0
    early_count: int = 0
    late: bool = True
    accumulating: bool = True

    @classmethod
    def parse(cls, value: Any) -> TriggerSpec:
        """Reads ``{early: 10s | 100 | {count: 100}, late: true, accumulation: discarding}``."""
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise SpecError("trigger: expected a mapping such as {early: 10s}")
        _known(value, ("early", "late", "accumulation"), "trigger")
        early = value.get("early")
        early_seconds, early_count = 0.0, 0
        if isinstance(early, Mapping):
            _known(early, ("every", "count"), "trigger.early")
            if "count" in early:
                early_count = _count(early["count"])
            if "every" in early:
                early_seconds = _duration(early["every"], "trigger.early.every")
        elif isinstance(early, int) and not isinstance(early, bool):
            early_count = _count(early)
        elif early is not None:
            early_seconds = _duration(early, "trigger.early")
        accumulation = str(value.get("accumulation", "accumulating")).lower()
        if accumulation not in ("accumulating", "discarding"):
            raise SpecError("trigger.accumulation: use accumulating or discarding")
        late = value.get("late", True)
        if not isinstance(late, bool):
            raise SpecError("trigger.late: use true or false")
        if early_seconds and early_count:
            raise SpecError("trigger.early: give either a time (every) or a count, not both")
        return cls(early_seconds, early_count, late, accumulation == "accumulating")

    @property
    def has_early(self) -> bool:
        """Whether EARLY panes fire."""
        return bool(self.early_seconds or self.early_count)


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SpecError(f"trigger.early count must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class AggregateCall:
    """One aggregate: ``name: function(argument[, q])``.

    Attributes:
        name: the output column.
        function: one of `FUNCTIONS`.
        argument: the expression aggregated (the condition of ``count_if``), or ``None``.
        quantile: the ``q`` of ``approx_quantile``, in (0, 1).
    """

    name: str
    function: str
    argument: Expression | None = None
    quantile: float | None = None

    @classmethod
    def parse(cls, name: str, text: str) -> AggregateCall:
        """Reads ``count()``, ``count_if(status >= 500)``, ``approx_quantile(latency, 0.95)``."""
        where = f"aggregates.{name}"
        if not isinstance(text, str):
            raise SpecError(f"{where}: expected text such as count() or sum(amount)")
        try:
            call = parse_bounded(text).body
        except ExpressionError as exc:
            raise SpecError(
                f"{where}: {text[:60]!r} is not a call such as sum(amount) ({exc})"
            ) from None
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.keywords:
            raise SpecError(f"{where}: {text!r} is not a call such as sum(amount)")
        function = call.func.id
        if function not in FUNCTIONS:
            raise SpecError(
                f"{where}: unknown aggregate {function!r}; known: {', '.join(FUNCTIONS)}"
            )
        wanted = FUNCTIONS[function]
        if len(call.args) != wanted:
            raise SpecError(f"{where}: {function} takes {wanted} argument(s), got {len(call.args)}")
        if wanted == 0:
            return cls(name, function)
        segment = ast.get_source_segment(text.strip(), call.args[0])
        try:
            argument = Expression(segment or "")
        except ExpressionError as exc:
            raise SpecError(f"{where}: {exc}") from None
        quantile = None
        if function == "approx_quantile":
            q = call.args[1]
            if not isinstance(q, ast.Constant) or not isinstance(q.value, (int, float)):
                raise SpecError(f"{where}: the quantile must be a number such as 0.95")
            quantile = float(q.value)
            if not 0.0 < quantile < 1.0:
                raise SpecError(f"{where}: the quantile must be between 0 and 1, got {quantile}")
        return cls(name, function, argument, quantile)

    @property
    def fields(self) -> frozenset[str]:
        """The record fields it reads."""
        return self.argument.fields if self.argument is not None else frozenset()


@dataclass(frozen=True)
class AggregateSpec:
    """A whole windowed aggregation.

    Attributes:
        window: the windows.
        aggregates: the output aggregates, in order.
        group_by: the grouping fields (zero or more), top-level (`from_dict` refuses dotted
            paths: nested fields cannot key a group).
        event_time: the field holding the event time, if the spec names one.
        having: a filter on the output row (aggregates, group keys).
        allowed_lateness: how long after a window closes late records still update it, seconds.
        trigger: early and late firings and the accumulation mode.
    """

    window: WindowSpec
    aggregates: tuple[AggregateCall, ...]
    group_by: tuple[str, ...] = ()
    event_time: str | None = None
    having: Expression | None = None
    allowed_lateness: float = 0.0
    trigger: TriggerSpec = field(default_factory=TriggerSpec)

    def __post_init__(self) -> None:
        if not self.aggregates:
            raise SpecError("aggregates: give at least one, e.g. {events: count()}")
        names = [a.name for a in self.aggregates] + list(self.group_by)
        clashes = sorted(
            {n for n in names if names.count(n) > 1} | (set(names) & set(OUTPUT_FIELDS))
        )
        if clashes:
            raise SpecError(
                f"output columns {clashes} are named twice or clash with {list(OUTPUT_FIELDS)}"
            )
        if self.window.type == "global" and not self.trigger.has_early:
            raise SpecError(
                "window: a global window never closes; give trigger: {early: 10s} (or a count) "
                "for running totals"
            )
        if self.having is not None:
            unknown = sorted(self.having.fields - set(names) - set(OUTPUT_FIELDS))
            if unknown:
                raise SpecError(
                    f"having: {unknown} are not output columns; use aggregates or group keys: "
                    f"{names}"
                )

    @property
    def input_fields(self) -> frozenset[str]:
        """The record fields the aggregation reads (group keys and aggregate arguments)."""
        used = set(self.group_by)
        for call in self.aggregates:
            used |= call.fields
        return frozenset(used)

    def check_fields(self, available: Iterable[str]) -> None:
        """Raises `SpecError` if the spec reads fields that records do not have."""
        missing = sorted(self.input_fields - set(available))
        if missing:
            raise SpecError(
                f"the spec reads fields the records do not have: {missing}; "
                f"record fields: {sorted(available)}"
            )

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> AggregateSpec:
        """Builds a spec from a parsed YAML/JSON mapping; raises `SpecError`."""
        if not isinstance(spec, Mapping):
            raise SpecError("the spec must be a mapping with window and aggregates")
        _known(
            spec,
            ("event_time", "window", "group_by", "aggregates", "having", "allowed_lateness",
             "lateness", "grace", "trigger"),
            "spec",
        )  # fmt: skip
        if "window" not in spec:
            raise SpecError("spec: window is required, e.g. window: {type: tumbling, size: 60s}")
        aggregates = spec.get("aggregates")
        if not isinstance(aggregates, Mapping) or not aggregates:
            raise SpecError("spec: aggregates is required, e.g. aggregates: {events: count()}")
        group_by = spec.get("group_by", ())
        if isinstance(group_by, str):
            group_by = (group_by,)
        if not all(isinstance(g, str) and g for g in group_by):
            raise SpecError("group_by: expected a list of field names")
        nested = [g for g in group_by if "." in g]
        if nested:
            raise SpecError(
                f"group_by takes top-level fields, not nested paths such as {nested[0]!r}; "
                "group by a top-level field (copy a nested value to one with a UDF)"
            )
        lateness = _first(spec, "allowed_lateness", "lateness", "grace")
        having = spec.get("having")
        if having is not None and not isinstance(having, (str, bool, int, float)):
            raise SpecError("having: expected an expression such as requests >= 10")
        try:
            having_expression = Expression(str(having)) if having is not None else None
        except ExpressionError as exc:
            raise SpecError(f"having: {exc}") from None
        return cls(
            window=WindowSpec.parse(spec["window"]),
            aggregates=tuple(AggregateCall.parse(str(n), t) for n, t in aggregates.items()),
            group_by=tuple(group_by),
            event_time=spec.get("event_time"),
            having=having_expression,
            allowed_lateness=_duration(lateness, "allowed_lateness") if lateness is not None else 0,
            trigger=TriggerSpec.parse(spec.get("trigger")),
        )

    @classmethod
    def load(cls, source: str | Path) -> AggregateSpec:
        """Reads a spec from a YAML or JSON file, or from inline YAML/JSON text."""
        text = str(source)
        path = Path(text)
        if "\n" not in text and "{" not in text and ":" not in text:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SpecError(f"cannot read spec file {path}: {exc.strerror}") from None
        try:
            document = load_yaml(text)
        except YamlError as exc:
            raise SpecError(f"the spec: {exc}") from None
        return cls.from_dict(document)
