"""The aggregate functions of a windowed aggregation, combined in one Beam ``CombineFn``.

`SpecCombineFn` computes every aggregate of an `AggregateSpec` in one pass, with a compact
accumulator per (key, window): a list holding one small state per aggregate, so that Beam's
combiner lifting computes partial aggregates before the shuffle. Its inputs are what
`SpecCombineFn.prepare` makes of a record, ``(values, event_time_seconds)``; its output is
``{aggregate_name: value}``.

`SpecCombineFn.prepare` holds every check of one record against the spec, for all the paths that
aggregate (record by record, in blocks, in sessions): it evaluates the aggregates' arguments
once, and raises a `transforms.errors.RecordError` for a record that cannot be aggregated, which
the path dead-letters with step ``aggregate``:

- ``bad_value``: an argument is an integer outside 64 bits or an infinite float, or its
  expression fails on the record's values (`transforms.expressions.BadValue`);
- ``expression_limit``: an argument's expression would build an oversize value;
- ``bad_timestamp``: a window of the event lies outside the years 0001 to 9999 (the range of
  ISO-8601 and BigQuery timestamps; a window end is written as one). Parse accepts every event
  time of that range; near its ends, the windows decide.

A value of another kind than an aggregate takes (text in ``sum``), or NaN, is not an error: it
is left out of that aggregate, as a missing value is. A ``sum`` or ``mean`` whose total leaves
the range a row can hold (64-bit integers; finite floats) is written as null and counted in
``aggregate_overflows``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

from transforms import metrics
from transforms.aggregate.spec import AggregateCall, AggregateSpec, WindowSpec
from transforms.errors import BadTimestamp, RecordError
from transforms.expressions import BadValue

__all__ = ["END_SECONDS", "FIRST_SECONDS", "HyperLogLog", "SpecCombineFn"]

# A prepared record: one value per aggregate (None for count()), and the event time in seconds.
Element = tuple[tuple[Any, ...], float]
# Windows must start at 0001-01-01T00:00:00Z or later and end before 10000-01-01T00:00:00Z.
FIRST_SECONDS = -62135596800.0
END_SECONDS = 253402300800.0
_INT64 = 1 << 63
_INFINITY = float("inf")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


class HyperLogLog:
    """Distinct counting in bounded memory: exact up to 256 values, then 4,096 registers.

    The state is ``set`` of 64-bit hashes while small, then a ``bytearray`` of registers
    (standard error about 1.6 %). Hashes come from BLAKE2b of the value's ``repr``, so the
    same value gives the same hash on every worker.
    """

    PRECISION = 12
    REGISTERS = 1 << PRECISION
    EXACT_LIMIT = 256

    @staticmethod
    def hash(value: Any) -> int:
        """Returns the stable 64-bit hash of a value."""
        digest = hashlib.blake2b(repr(value).encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    @classmethod
    def add(cls, state: set[int] | bytearray, hashed: int) -> set[int] | bytearray:
        """Adds a hash; returns the (possibly converted) state."""
        if isinstance(state, set):
            state.add(hashed)
            return cls._densify(state) if len(state) > cls.EXACT_LIMIT else state
        cls._set_register(state, hashed)
        return state

    @classmethod
    def merge(cls, states: Iterable[set[int] | bytearray]) -> set[int] | bytearray:
        """Returns the union of states."""
        exact: set[int] = set()
        dense: bytearray | None = None
        for state in states:
            if isinstance(state, set):
                exact |= state
            elif dense is None:
                dense = bytearray(state)
            else:
                for i, rank in enumerate(state):
                    if rank > dense[i]:
                        dense[i] = rank
        if dense is None:
            return cls._densify(exact) if len(exact) > cls.EXACT_LIMIT else exact
        for hashed in exact:
            cls._set_register(dense, hashed)
        return dense

    @classmethod
    def estimate(cls, state: set[int] | bytearray) -> int:
        """Returns the (estimated) number of distinct values."""
        if isinstance(state, set):
            return len(state)
        m = cls.REGISTERS
        raw = 0.7213 / (1 + 1.079 / m) * m * m / sum(2.0**-rank for rank in state)
        zeros = state.count(0)
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)

    @classmethod
    def _densify(cls, hashes: set[int]) -> bytearray:
        registers = bytearray(cls.REGISTERS)
        for hashed in hashes:
            cls._set_register(registers, hashed)
        return registers

    @classmethod
    def _set_register(cls, registers: bytearray, hashed: int) -> None:
        index = hashed >> (64 - cls.PRECISION)
        rest = hashed & ((1 << (64 - cls.PRECISION)) - 1)
        rank = (64 - cls.PRECISION) - rest.bit_length() + 1
        if rank > registers[index]:
            registers[index] = rank


class _Aggregator:
    """One aggregate's state handling: create, add, merge, extract."""

    def __init__(self, call: AggregateCall) -> None:
        del call  # its argument is evaluated by SpecCombineFn.prepare

    def create(self) -> Any:
        return None

    def add(self, state: Any, value: Any, event_time: float) -> Any:
        """Adds the record's value of the argument (`SpecCombineFn.prepare` computed it)."""
        raise NotImplementedError

    def merge(self, states: list[Any]) -> Any:
        raise NotImplementedError

    def extract(self, state: Any) -> Any:
        return state


class _Count(_Aggregator):
    def create(self) -> int:
        return 0

    def add(self, state: int, value: Any, event_time: float) -> int:
        return state + 1

    def merge(self, states: list[int]) -> int:
        return sum(states)


class _CountIf(_Count):
    def add(self, state: int, value: Any, event_time: float) -> int:
        return state + 1 if value else state


class _Sum(_Aggregator):
    """State ``[total, n]``; the output is the total of the numbers, ``None`` if there are none."""

    def create(self) -> list[Any]:
        return [0, 0]

    def add(self, state: list[Any], value: Any, event_time: float) -> list[Any]:
        if _number(value):
            state[0] += value
            state[1] += 1
        return state

    def merge(self, states: list[list[Any]]) -> list[Any]:
        return [sum(s[0] for s in states), sum(s[1] for s in states)]

    def extract(self, state: list[Any]) -> Any:
        return _held(state[0]) if state[1] else None


class _Mean(_Sum):
    def extract(self, state: list[Any]) -> Any:
        total = _held(state[0]) if state[1] else None
        return None if total is None else total / state[1]


def _held(total: int | float) -> int | float | None:
    """``total`` if a row can hold it (a 64-bit integer, a finite float), else ``None``, counted."""
    held = -_INT64 <= total < _INT64 if type(total) is int else math.isfinite(total)
    if held:
        return total
    metrics.counter(metrics.OVERFLOWED).inc()
    return None


class _Extreme(_Aggregator):
    """Min or max over the values that compare (numbers with numbers, text with text)."""

    def __init__(self, call: AggregateCall) -> None:
        super().__init__(call)
        self.better = (lambda a, b: a < b) if call.function == "min" else (lambda a, b: a > b)

    def _pick(self, current: Any, value: Any) -> Any:
        if value is None or isinstance(value, bool) or value != value:
            return current
        if current is None:
            return value
        try:
            return value if self.better(value, current) else current
        except TypeError:
            return current

    def add(self, state: Any, value: Any, event_time: float) -> Any:
        return self._pick(state, value)

    def merge(self, states: list[Any]) -> Any:
        result = None
        for state in states:
            result = self._pick(result, state)
        return result


class _Distinct(_Aggregator):
    def create(self) -> set[int]:
        return set()

    def add(self, state: Any, value: Any, event_time: float) -> Any:
        return state if value is None else HyperLogLog.add(state, HyperLogLog.hash(value))

    def merge(self, states: list[Any]) -> Any:
        return HyperLogLog.merge(states)

    def extract(self, state: Any) -> int:
        return HyperLogLog.estimate(state)


class _Quantile(_Aggregator):
    """Beam's mergeable quantile sketch (rank error about 1 %), 101 quantiles kept."""

    def __init__(self, call: AggregateCall) -> None:
        super().__init__(call)
        assert call.quantile is not None
        self.index = round(call.quantile * 100)
        self.sketch = ApproximateQuantilesCombineFn.create(num_quantiles=101, epsilon=0.01)

    def create(self) -> Any:
        return self.sketch.create_accumulator()

    def add(self, state: Any, value: Any, event_time: float) -> Any:
        return self.sketch.add_input(state, value) if _number(value) else state

    def merge(self, states: list[Any]) -> Any:
        return self.sketch.merge_accumulators(states)

    def extract(self, state: Any) -> Any:
        quantiles = self.sketch.extract_output(state)
        return quantiles[self.index] if quantiles else None


class _Latest(_Aggregator):
    """State ``(event_time, value)`` of the newest non-null value; ties keep the larger repr."""

    def add(self, state: Any, value: Any, event_time: float) -> Any:
        if value is None:
            return state
        return self.merge([state, (event_time, value)])

    def merge(self, states: list[Any]) -> Any:
        present = [s for s in states if s is not None]
        return max(present, key=lambda s: (s[0], repr(s[1]))) if present else None

    def extract(self, state: Any) -> Any:
        return None if state is None else state[1]


_AGGREGATORS: dict[str, type[_Aggregator]] = {
    "count": _Count,
    "count_if": _CountIf,
    "sum": _Sum,
    "mean": _Mean,
    "min": _Extreme,
    "max": _Extreme,
    "approx_count_distinct": _Distinct,
    "approx_quantile": _Quantile,
    "latest": _Latest,
}


class SpecCombineFn(beam.CombineFn):
    """Computes every aggregate of a spec; accumulator: one state per aggregate, in order.

    Input elements are what `prepare` returns for a record, ``(values, event_time_seconds)``;
    the output is ``{"requests": 12, "avg_latency_ms": 41.2, ...}`` in the spec's order.
    """

    def __init__(self, spec: AggregateSpec) -> None:
        self._spec = spec
        self._window = spec.window
        self._names = [call.name for call in spec.aggregates]
        self._parts = [_AGGREGATORS[call.function](call) for call in spec.aggregates]
        self._adds = [part.add for part in self._parts]
        self._windowed = spec.window.type != "global"
        self._evaluated = [
            (i, call.name, call.argument)
            for i, call in enumerate(spec.aggregates)
            if call.argument is not None
        ]

    def prepare(self, record: dict[str, Any], event_time: float) -> Element:
        """Evaluates the spec's inputs for one record, checking them (see this module).

        Args:
            record: the record's data.
            event_time: its event time, in epoch seconds.

        Returns:
            ``(values, event_time)``: one value per aggregate (``None`` for ``count()``).

        Raises:
            BadValue: a value the aggregates cannot hold, or an expression that fails on it.
            ExpressionLimit: an expression would build an oversize value.
            BadTimestamp: a window of the event lies outside the years 0001 to 9999.
        """
        if self._windowed:
            _check_windows(self._window, event_time)
        values: list[Any] = [None] * len(self._names)
        for i, name, argument in self._evaluated:
            try:
                value = argument(record)
            except RecordError:
                raise
            except Exception as exc:  # noqa: BLE001 (any failure of one record's values)
                raise BadValue(f"{name}: {argument.text}: {type(exc).__name__}: {exc}") from None
            kind = type(value)
            if (kind is int and not -_INT64 <= value < _INT64) or (
                kind is float and (value == _INFINITY or value == -_INFINITY)
            ):
                raise _bad_number(name, value)
            values[i] = value
        return tuple(values), event_time

    def create_accumulator(self) -> list[Any]:
        return [part.create() for part in self._parts]

    def add_input(self, accumulator: list[Any], element: Element) -> list[Any]:
        values, event_time = element
        for i, add in enumerate(self._adds):
            accumulator[i] = add(accumulator[i], values[i], event_time)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[list[Any]]) -> list[Any]:
        columns = list(zip(*accumulators, strict=True))
        if not columns:
            return self.create_accumulator()
        return [part.merge(list(states)) for part, states in zip(self._parts, columns, strict=True)]

    def extract_output(self, accumulator: list[Any]) -> dict[str, Any]:
        return {
            name: part.extract(state)
            for name, part, state in zip(self._names, self._parts, accumulator, strict=True)
        }


def _bad_number(name: str, value: float) -> BadValue:
    """The error for a number that an aggregate (and the row it ends in) cannot hold."""
    if isinstance(value, float):
        return BadValue(f"{name}: the value {value!r} is not a finite number")
    digits = len(str(abs(value))) if value.bit_length() < 10_000 else "thousands of"
    return BadValue(f"{name}: an integer of {digits} digits (at most 64 bits)")


def _check_windows(window: WindowSpec, event_time: float) -> None:
    """Raises `BadTimestamp` if a window holding ``event_time`` leaves the years 0001..9999."""
    if window.type == "global":
        return
    if window.type == "session":
        first, end = event_time, event_time + window.gap
    else:
        step = window.every or window.size
        last_start = math.floor(event_time / step) * step
        first, end = last_start + step - window.size, last_start + window.size
    if first < FIRST_SECONDS or end >= END_SECONDS:
        raise BadTimestamp(
            f"event time {event_time:.0f}s: its {window.type} window reaches beyond the years "
            "0001 to 9999 that window bounds are written in"
        )
