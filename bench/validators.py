"""JSON Schema validators on this machine: records per second, as ratios to the fastest.

The same records (generated events with a nested ``request`` object, one in ten broken in one
keyword) are checked against the same JSON Schema (``enum``, ``minimum``, ``pattern``,
``maxLength``, nested ``required``, ``additionalProperties``) by:

* ``fastjsonschema``: the schema compiled to Python code;
* ``jsonschema``: ``Draft202012Validator.is_valid`` (and ``iter_errors`` on the broken ones);
* ``msgspec``: a hand-written ``msgspec.Struct`` with the same constraints, ``msgspec.convert``
  from the decoded dict (the upper bound of a generated type: most of JSON Schema has no
  msgspec equivalent, e.g. ``format``, ``oneOf`` or ``additionalProperties`` as a schema).

Every validator must give the same verdicts; the run stops otherwise.

```sh
.venv/bin/python -m bench.validators            # 50k records, about 20 s
.venv/bin/python -m bench.validators --records 10000
```
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

from transforms.io.generator import EventGenerator

EVENT_TYPES = ["page_view", "click", "add_to_cart", "purchase", "search", "login"]
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["event_id", "ts", "user_id", "event_type", "request"],
    "additionalProperties": False,
    "properties": {
        "event_id": {"type": "string", "pattern": "^e[0-9]+-[0-9]+$", "maxLength": 64},
        "ts": {"type": "string", "maxLength": 40},
        "user_id": {"type": "string", "maxLength": 32},
        "event_type": {"enum": EVENT_TYPES},
        "amount": {"type": ["number", "null"], "minimum": 0},
        "country": {"type": "string", "maxLength": 2},
        "request": {
            "type": "object",
            "required": ["endpoint", "status_code"],
            "additionalProperties": False,
            "properties": {
                "endpoint": {"type": "string", "maxLength": 200},
                "status_code": {"type": "integer", "minimum": 100, "maximum": 599},
                "latency_ms": {"type": "number", "minimum": 0},
            },
        },
    },
}
# One way to break each keyword: (field path, value); None deletes the field.
BREAKS: list[tuple[tuple[str, ...], Any]] = [
    (("event_type",), "teleport"),
    (("request", "status_code"), 42),
    (("event_id",), "x-1"),
    (("country",), "FRA"),
    (("request", "endpoint"), None),
    (("request", "extra"), 1),
]


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """`SCHEMA`'s ``request`` object as a msgspec type."""

    endpoint: Annotated[str, msgspec.Meta(max_length=200)]
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)]
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] | msgspec.UnsetType = msgspec.UNSET


class Event(msgspec.Struct, forbid_unknown_fields=True):
    """`SCHEMA` as a msgspec type."""

    event_id: Annotated[str, msgspec.Meta(pattern="^e[0-9]+-[0-9]+$", max_length=64)]
    ts: Annotated[str, msgspec.Meta(max_length=40)]
    user_id: Annotated[str, msgspec.Meta(max_length=32)]
    event_type: Literal["page_view", "click", "add_to_cart", "purchase", "search", "login"]
    request: Request
    amount: Annotated[float, msgspec.Meta(ge=0)] | None | msgspec.UnsetType = msgspec.UNSET
    country: Annotated[str, msgspec.Meta(max_length=2)] | msgspec.UnsetType = msgspec.UNSET


def records(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """Returns ``count`` events reshaped to `SCHEMA`, one in ten broken in one keyword."""
    generator = EventGenerator(seed=seed, malformed=0.0, late=0.0, users=1000)
    rng = random.Random(seed)
    out = []
    for index in range(count):
        event = generator.event(rng, index, 1_764_064_800.0 + index)
        event["request"] = {
            name: event.pop(name) for name in ("endpoint", "status_code", "latency_ms")
        }
        event["event_type"] = EVENT_TYPES[index % len(EVENT_TYPES)]
        if index % 10 == 9:
            path, value = BREAKS[(index // 10) % len(BREAKS)]
            target = event
            for part in path[:-1]:
                target = target[part]
            if value is None:
                target.pop(path[-1], None)
            else:
                target[path[-1]] = value
        out.append(event)
    return out


def _fastjsonschema() -> Callable[[dict], bool]:
    import fastjsonschema

    validate = fastjsonschema.compile(SCHEMA)

    def check(record: dict) -> bool:
        try:
            validate(record)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return check


def _jsonschema() -> Callable[[dict], bool]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)

    def check(record: dict) -> bool:
        if validator.is_valid(record):
            return True
        next(validator.iter_errors(record))  # the error a dead letter would report
        return False

    return check


def _msgspec() -> Callable[[dict], bool]:
    def check(record: dict) -> bool:
        try:
            msgspec.convert(record, Event)
        except msgspec.ValidationError:
            return False
        return True

    return check


VALIDATORS = {"fastjsonschema": _fastjsonschema, "jsonschema": _jsonschema, "msgspec": _msgspec}


def main() -> None:
    """Measures every validator on the same records and prints the rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--validators", nargs="+", default=list(VALIDATORS))
    args = parser.parse_args()
    data = records(args.records)
    rates: dict[str, float] = {}
    verdicts: dict[str, list[bool]] = {}
    for name in args.validators:
        check = VALIDATORS[name]()
        batch = copy.deepcopy(data)
        start = time.perf_counter()
        verdicts[name] = [check(record) for record in batch]
        rates[name] = len(batch) / (time.perf_counter() - start)
    first = next(iter(verdicts.values()))
    differ = [name for name, got in verdicts.items() if got != first]
    if differ:
        raise SystemExit(f"verdicts differ: {differ} against {args.validators[0]}")
    best = max(rates.values())
    print(f"{args.records} records, {first.count(False)} invalid, same verdicts from all")
    for name, rate in sorted(rates.items(), key=lambda item: -item[1]):
        print(f"  {name:<16}{rate:>12,.0f} records/s  {rate / best:6.3f} x the fastest")


if __name__ == "__main__":
    main()
