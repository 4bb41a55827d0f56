"""Tests of transforms.aggregate.aggregators: SpecCombineFn against plain Python, and HLL."""

from __future__ import annotations

import hashlib
import math
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest

from transforms.aggregate.aggregators import HyperLogLog, SpecCombineFn
from transforms.aggregate.spec import AggregateSpec

# name -> (spec text, reference function over [(record, event_time)])
Rows = list[tuple[dict[str, Any], float]]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _get(record: dict[str, Any], *path: str) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _numbers(rows: Rows, read: Callable[[dict], Any]) -> list[Any]:
    return [read(r) for r, _ in rows if _is_number(read(r))]


def _ref_sum(rows: Rows, read: Callable[[dict], Any]) -> Any:
    values = _numbers(rows, read)
    return sum(values) if values else None


def _ref_mean(rows: Rows, read: Callable[[dict], Any]) -> Any:
    values = _numbers(rows, read)
    return sum(values) / len(values) if values else None


def _ref_min(rows: Rows, read: Callable[[dict], Any]) -> Any:
    values = _numbers(rows, read)
    return min(values) if values else None


def _ref_max(rows: Rows, read: Callable[[dict], Any]) -> Any:
    values = _numbers(rows, read)
    return max(values) if values else None


def _ref_distinct(rows: Rows, read: Callable[[dict], Any]) -> int:
    return len({read(r) for r, _ in rows if read(r) is not None})


def _ref_latest(rows: Rows, read: Callable[[dict], Any]) -> Any:
    present = [(t, read(r)) for r, t in rows if read(r) is not None]
    return max(present, key=lambda p: (p[0], repr(p[1])))[1] if present else None


def _latency(r: dict) -> Any:
    return r.get("latency")


# Each aggregate: spec text, exact reference (None for approx_quantile: checked by rank).
AGGREGATES: dict[str, tuple[str, Callable[[Rows], Any] | None]] = {
    "n": ("count()", len),
    "errors": (
        "count_if(status >= 500)",
        lambda rows: sum(1 for r, _ in rows if _is_number(r.get("status")) and r["status"] >= 500),
    ),
    "cheap_de": (
        "count_if(amount < 10 and country in ('DE', 'AT'))",
        lambda rows: sum(
            1
            for r, _ in rows
            if _is_number(r.get("amount")) and r["amount"] < 10 and r.get("country") in ("DE", "AT")
        ),
    ),
    "total": ("sum(amount)", lambda rows: _ref_sum(rows, lambda r: r.get("amount"))),
    "total_x2": (
        "sum(amount * 2)",
        lambda rows: _ref_sum(
            rows, lambda r: r["amount"] * 2 if _is_number(r.get("amount")) else None
        ),
    ),
    "avg": ("mean(latency)", lambda rows: _ref_mean(rows, _latency)),
    "lo": ("min(latency)", lambda rows: _ref_min(rows, _latency)),
    "hi": ("max(latency)", lambda rows: _ref_max(rows, _latency)),
    "oldest": ("max(user.age)", lambda rows: _ref_max(rows, lambda r: _get(r, "user", "age"))),
    "users": (
        "approx_count_distinct(user_id)",
        lambda rows: _ref_distinct(rows, lambda r: r.get("user_id")),
    ),
    "p90": ("approx_quantile(latency, 0.9)", None),
    "p50": ("approx_quantile(latency, 0.5)", None),
    "last_status": ("latest(status)", lambda rows: _ref_latest(rows, lambda r: r.get("status"))),
}
QUANTILES = {"p90": 0.9, "p50": 0.5}


def _spec() -> AggregateSpec:
    return AggregateSpec.from_dict(
        {
            "window": {"type": "tumbling", "size": "60s"},
            "aggregates": {name: text for name, (text, _) in AGGREGATES.items()},
        }
    )


def _random_rows(seed: int, n: int) -> Rows:
    rng = random.Random(seed)
    rows: Rows = []
    for i in range(n):
        record: dict[str, Any] = {
            "status": rng.choice([200, 200, 201, 404, 500, 503, None]),
            "country": rng.choice(["DE", "AT", "FR", "US"]),
            "user_id": rng.choice([f"u{k}" for k in range(40)] + [None]),
            "user": {"age": rng.randint(10, 90)} if rng.random() < 0.8 else "anonymous",
        }
        roll = rng.random()
        if roll < 0.1:
            record["amount"] = None
        elif roll < 0.15:
            record["amount"] = "n/a"
        elif roll < 0.5:
            record["amount"] = rng.randint(-5, 50)
        elif roll < 0.95:
            record["amount"] = round(rng.uniform(0, 100), 2)
        # else: no amount at all
        if rng.random() < 0.9:
            record["latency"] = round(rng.expovariate(1 / 40), 3)
        # Event times collide on purpose so that latest() must break ties.
        rows.append((record, 1_000.0 + rng.randint(0, 30) + (i % 2) * 0.5))
    return rows


def _check_quantile(value: Any, rows: Rows, q: float) -> None:
    data = sorted(v for v in _numbers(rows, _latency))
    if not data:
        assert value is None
        return
    below = sum(1 for v in data if v < value) / len(data)
    at_most = sum(1 for v in data if v <= value) / len(data)
    assert value in data
    # The value's rank interval in the sorted data must come within 2 % of q.
    assert below <= q + 0.02 and at_most >= q - 0.02, (value, below, at_most, q)


def _check_against_reference(result: dict[str, Any], rows: Rows) -> None:
    assert list(result) == list(AGGREGATES)
    for name, (_, reference) in AGGREGATES.items():
        if reference is None:
            _check_quantile(result[name], rows, QUANTILES[name])
            continue
        expected = reference(rows)
        if isinstance(expected, float):
            assert result[name] == pytest.approx(expected, rel=1e-9), name
        else:
            assert result[name] == expected, name


def _single_pass(fn: SpecCombineFn, rows: Rows) -> dict[str, Any]:
    accumulator = fn.create_accumulator()
    for row in rows:
        accumulator = fn.add_input(accumulator, fn.prepare(*row))
    return fn.extract_output(accumulator)


@pytest.mark.parametrize(("seed", "n"), [(1, 1), (2, 7), (3, 300), (4, 1000)])
def test_single_pass_matches_reference(seed: int, n: int) -> None:
    rows = _random_rows(seed, n)
    _check_against_reference(_single_pass(SpecCombineFn(_spec()), rows), rows)


@pytest.mark.parametrize(("seed", "parts"), [(5, 2), (6, 5), (7, 17)])
def test_split_then_merge_matches_single_pass(seed: int, parts: int) -> None:
    rows = _random_rows(seed, 600)
    fn = SpecCombineFn(_spec())
    rng = random.Random(seed)
    chunks: list[Rows] = [[] for _ in range(parts)]
    for row in rows:
        chunks[rng.randrange(parts)].append(row)
    accumulators = []
    for chunk in chunks:
        accumulator = fn.create_accumulator()
        for row in chunk:
            accumulator = fn.add_input(accumulator, fn.prepare(*row))
        # Accumulators travel between workers pickled.
        accumulators.append(pickle.loads(pickle.dumps(accumulator)))
    # Merge in two levels, as combiner lifting may.
    middle = len(accumulators) // 2
    merged = fn.merge_accumulators(
        [fn.merge_accumulators(accumulators[:middle]), fn.merge_accumulators(accumulators[middle:])]
    )
    result = fn.extract_output(merged)
    _check_against_reference(result, rows)
    single = _single_pass(SpecCombineFn(_spec()), rows)
    for name in AGGREGATES:
        if name in QUANTILES:
            continue
        if isinstance(single[name], float):
            assert result[name] == pytest.approx(single[name], rel=1e-9)
        else:
            assert result[name] == single[name]


def test_empty_accumulator_and_empty_merge() -> None:
    fn = SpecCombineFn(_spec())
    empty = fn.extract_output(fn.create_accumulator())
    assert empty == {
        "n": 0,
        "errors": 0,
        "cheap_de": 0,
        "total": None,
        "total_x2": None,
        "avg": None,
        "lo": None,
        "hi": None,
        "oldest": None,
        "users": 0,
        "p90": None,
        "p50": None,
        "last_status": None,
    }
    assert fn.extract_output(fn.merge_accumulators([])) == empty
    rows = _random_rows(8, 50)
    full = fn.create_accumulator()
    for row in rows:
        full = fn.add_input(full, fn.prepare(*row))
    merged = fn.merge_accumulators([fn.create_accumulator(), full, fn.create_accumulator()])
    _check_against_reference(fn.extract_output(merged), rows)


def test_all_values_missing() -> None:
    fn = SpecCombineFn(_spec())
    rows: Rows = [({}, 1.0), ({"amount": None, "latency": True, "user": {"age": None}}, 2.0)]
    result = _single_pass(fn, rows)
    assert result["n"] == 2
    assert result["errors"] == 0
    assert result["total"] is None and result["avg"] is None
    assert result["lo"] is None and result["hi"] is None and result["oldest"] is None
    assert result["users"] == 0
    assert result["p50"] is None
    assert result["last_status"] is None


def test_sum_ignores_booleans_and_nan_is_ignored_by_min_max_mean() -> None:
    fn = SpecCombineFn(
        AggregateSpec.from_dict(
            {
                "window": {"type": "tumbling", "size": 60},
                "aggregates": {"s": "sum(x)", "m": "mean(x)", "lo": "min(x)", "hi": "max(x)"},
            }
        )
    )
    rows: Rows = [({"x": v}, 0.0) for v in (True, 3, float("nan"), 1.5, False, None)]
    assert _single_pass(fn, rows) == {"s": 4.5, "m": 2.25, "lo": 1.5, "hi": 3}


def test_min_max_of_text() -> None:
    fn = SpecCombineFn(
        AggregateSpec.from_dict(
            {
                "window": {"type": "tumbling", "size": 60},
                "aggregates": {"lo": "min(name)", "hi": "max(name)"},
            }
        )
    )
    names = ["kiwi", "apple", "pear", "banana"]
    assert _single_pass(fn, [({"name": n}, 0.0) for n in names]) == {
        "lo": min(names),
        "hi": max(names),
    }


def test_latest_prefers_newest_event_time_not_arrival_order() -> None:
    fn = SpecCombineFn(
        AggregateSpec.from_dict(
            {"window": {"type": "tumbling", "size": 60}, "aggregates": {"last": "latest(v)"}}
        )
    )
    rows: Rows = [({"v": "new"}, 30.0), ({"v": "old"}, 10.0), ({"v": None}, 50.0), ({}, 40.0)]
    assert _single_pass(fn, rows) == {"last": "new"}
    # Ties on event time keep the larger repr, whatever the order or split.
    tied: Rows = [({"v": "a"}, 5.0), ({"v": "c"}, 5.0), ({"v": "b"}, 5.0)]
    for order in (tied, tied[::-1]):
        assert _single_pass(fn, order) == {"last": "c"}
        parts = []
        for row in order:
            parts.append(fn.add_input(fn.create_accumulator(), fn.prepare(*row)))
        assert fn.extract_output(fn.merge_accumulators(parts)) == {"last": "c"}


# ---------------------------------------------------------------- HyperLogLog


def _reference_hash(value: Any) -> int:
    return int.from_bytes(hashlib.blake2b(repr(value).encode(), digest_size=8).digest(), "big")


def _state_of(values: Any) -> set[int] | bytearray:
    state: set[int] | bytearray = set()
    for value in values:
        state = HyperLogLog.add(state, HyperLogLog.hash(value))
    return state


def test_hash_is_stable_blake2b_of_repr() -> None:
    for value in ("u1", 1, 1.0, None, ("a", 2)):
        assert HyperLogLog.hash(value) == _reference_hash(value)
    assert HyperLogLog.hash(1) != HyperLogLog.hash("1")


@pytest.mark.parametrize("n", [0, 1, 2, 100, 255, 256])
def test_exact_up_to_256(n: int) -> None:
    values = [f"user-{i}" for i in range(n)] * 3  # duplicates do not count
    state = _state_of(values)
    assert isinstance(state, set)
    assert HyperLogLog.estimate(state) == n


@pytest.mark.parametrize("n", [257, 1000, 5000, 20000])
def test_error_bound_above_256(n: int) -> None:
    state = _state_of(range(n))
    assert isinstance(state, bytearray)
    assert len(state) == HyperLogLog.REGISTERS == 4096
    assert abs(HyperLogLog.estimate(state) - n) <= 0.05 * n


def _dense(values: Any) -> bytearray:
    """Registers computed here from the HLL definition, independently of the class."""
    registers = bytearray(4096)
    for value in values:
        hashed = _reference_hash(value)
        index = hashed >> 52
        rest = hashed & ((1 << 52) - 1)
        # rank = 1 + number of leading zeros of the remaining 52 bits
        rank = 1 + next((i for i in range(52) if rest & (1 << (51 - i))), 52)
        registers[index] = max(registers[index], rank)
    return registers


def test_dense_registers_follow_the_definition() -> None:
    assert _state_of(range(3000)) == _dense(range(3000))


def test_merge_sparse_and_dense_equals_union() -> None:
    dense = _state_of(range(5000))
    sparse = _state_of(list(range(4900, 5000)) + list(range(10_000, 10_150)))  # 250 values
    assert isinstance(dense, bytearray) and isinstance(sparse, set)
    union = list(range(5000)) + list(range(10_000, 10_150))
    dense_copy, sparse_copy = bytearray(dense), set(sparse)
    for order in ([dense, sparse], [sparse, dense]):
        merged = HyperLogLog.merge(order)
        assert merged == _dense(union)
        assert abs(HyperLogLog.estimate(merged) - 5150) <= 0.05 * 5150
    assert dense == dense_copy and sparse == sparse_copy  # inputs untouched


def test_merge_dense_with_dense_and_sparse_with_sparse() -> None:
    a, b = _state_of(range(0, 3000)), _state_of(range(2000, 6000))
    assert HyperLogLog.merge([a, b]) == _dense(range(6000))
    small_a, small_b = _state_of(range(0, 200)), _state_of(range(100, 250))
    merged_small = HyperLogLog.merge([small_a, small_b])
    assert isinstance(merged_small, set) and HyperLogLog.estimate(merged_small) == 250
    big_a, big_b = _state_of(range(0, 200)), _state_of(range(200, 400))
    merged_big = HyperLogLog.merge([big_a, big_b])
    assert merged_big == _dense(range(400))
    assert abs(HyperLogLog.estimate(merged_big) - 400) <= 0.05 * 400
    assert HyperLogLog.merge([]) == set()


def test_distinct_through_the_combine_fn_split() -> None:
    fn = SpecCombineFn(
        AggregateSpec.from_dict(
            {
                "window": {"type": "tumbling", "size": 60},
                "aggregates": {"d": "approx_count_distinct(k)"},
            }
        )
    )
    rng = random.Random(11)
    values = [rng.randrange(3000) for _ in range(8000)]
    exact = len(set(values))
    accumulators = []
    for start in range(0, len(values), 100):  # each part is small (sparse) on its own
        accumulator = fn.create_accumulator()
        for v in values[start : start + 100]:
            accumulator = fn.add_input(accumulator, fn.prepare({"k": v}, 0.0))
        accumulators.append(accumulator)
    estimate = fn.extract_output(fn.merge_accumulators(accumulators))["d"]
    assert abs(estimate - exact) <= 0.05 * exact
    assert math.isclose(estimate, fn.extract_output(fn.merge_accumulators(accumulators[::-1]))["d"])
