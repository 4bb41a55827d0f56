"""``parse_dlq``: parse JSON, validate, write good records and dead letters.

Validation follows ``pipelines/schemas/events.json`` (required fields, types, no unknown
fields, a readable ``ts``); 1% of the input is malformed. Suite: ``events_to_bigquery``
file -> file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam import coders
from apache_beam.pvalue import TaggedOutput

from bench.data import events_file
from bench.jobs.common import EVENTS_SCHEMA, ROOT, Decode, Job, file_args, loops, run_suite
from transforms.errors import BadTimestamp
from transforms.event_time import parse_timestamp

_FIELDS = [
    (f["name"], f["type"], f.get("mode") == "REQUIRED")
    for f in json.loads((ROOT / "pipelines/schemas/events.json").read_text())["fields"]
]
_NAMES = frozenset(name for name, _, _ in _FIELDS)
_TYPES = {"STRING": (str,), "TIMESTAMP": (str,), "INTEGER": (int,), "FLOAT": (int, float)}


def invalid(event: Any) -> str | None:
    """Returns why a parsed event does not fit the events schema, or None."""
    if not isinstance(event, dict):
        return "not_an_object"
    for name, kind, required in _FIELDS:
        value = event.get(name)
        if value is None:
            if required:
                return "missing_field"
            continue
        if isinstance(value, bool) or not isinstance(value, _TYPES[kind]):
            return "wrong_type"
        if kind == "TIMESTAMP":
            try:
                parse_timestamp(value)
            except BadTimestamp:
                return "bad_timestamp"
    if event.keys() - _NAMES:
        return "unknown_field"
    return None


def _dead(line: bytes, reason: str) -> str:
    return json.dumps({"reason": reason, "payload": line.decode("utf-8", "replace")})


def _parse_loop(decode: Decode, path: Path, out: Path) -> int:
    good = 0
    with path.open("rb") as lines, out.open("w") as rows, open(f"{out}-dead", "w") as dead:
        for line in lines:
            line = line.rstrip(b"\n")
            try:
                event = decode(line)
            except Exception:  # noqa: BLE001 - each decoder raises its own error
                dead.write(_dead(line, "invalid_json") + "\n")
                continue
            reason = invalid(event)
            if reason:
                dead.write(_dead(line, reason) + "\n")
            else:
                rows.write(json.dumps(event) + "\n")
                good += 1
    return good


class _ParseFn(beam.DoFn):
    def process(self, line: bytes) -> Iterator[Any]:
        try:
            event = json.loads(line)
        except ValueError:
            yield TaggedOutput("dead", _dead(line, "invalid_json"))
            return
        reason = invalid(event)
        if reason:
            yield TaggedOutput("dead", _dead(line, reason))
        else:
            yield json.dumps(event)


def _parse_naive(path: Path, out: Path) -> int:
    """ReadFromText(bytes) -> ParDo with a tagged dead-letter output -> two WriteToText."""
    with beam.Pipeline() as pipeline:
        results = (
            pipeline
            | beam.io.ReadFromText(str(path), coder=coders.BytesCoder())
            | beam.ParDo(_ParseFn()).with_outputs("dead", main="good")
        )
        _ = results.good | "Write good" >> beam.io.WriteToText(str(out))
        _ = results.dead | "Write dead" >> beam.io.WriteToText(f"{out}-dead")
    return -1


def _parse_suite(path: Path, out: Path) -> int:
    return run_suite("events_to_bigquery", [*file_args(path, out), EVENTS_SCHEMA]).count("written")


JOB = Job(
    lambda folder, count, keys: events_file(folder, count, keys, malformed=0.01),
    {**loops(_parse_loop), "naive_beam": _parse_naive, "suite": _parse_suite},
)
