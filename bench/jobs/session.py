"""``session``: sessions per user, 5-minute gap: start, end (last event), count, duration.

Suite: ``sessionize`` file -> file.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import apache_beam as beam

from bench.data import events_file
from bench.jobs.common import EVENTS_SCHEMA, Decode, Job, file_args, loops, run_suite
from transforms.event_time import format_timestamp, parse_timestamp

GAP = 300


def _session_row(user: str, start: float, end: float, count: int) -> str:
    return json.dumps({"user_id": user, "session_start": format_timestamp(start),
                       "session_end": format_timestamp(end), "event_count": count,
                       "duration_s": end - start})  # fmt: skip


def _session_loop(decode: Decode, path: Path, out: Path) -> int:
    times: dict[str, list[float]] = defaultdict(list)
    with path.open("rb") as lines:
        for line in lines:
            event = decode(line)
            times[event["user_id"]].append(parse_timestamp(event["ts"]))
    sessions = 0
    with out.open("w") as rows:
        for user, stamps in times.items():
            stamps.sort()
            start = previous = stamps[0]
            count = 0
            for stamp in stamps:
                if stamp - previous >= GAP:
                    rows.write(_session_row(user, start, previous, count) + "\n")
                    sessions += 1
                    start, count = stamp, 0
                previous = stamp
                count += 1
            rows.write(_session_row(user, start, previous, count) + "\n")
            sessions += 1
    return sessions


class _FirstLastCount(beam.CombineFn):
    def create_accumulator(self) -> tuple[float, float, int]:
        return float("inf"), float("-inf"), 0

    def add_input(self, acc: tuple[float, float, int], t: float) -> tuple[float, float, int]:
        return min(acc[0], t), max(acc[1], t), acc[2] + 1

    def merge_accumulators(self, accs: Any) -> tuple[float, float, int]:
        accs = list(accs)
        return min(a[0] for a in accs), max(a[1] for a in accs), sum(a[2] for a in accs)

    def extract_output(self, acc: tuple[float, float, int]) -> tuple[float, float, int]:
        return acc


def _session_naive(path: Path, out: Path) -> int:
    """Map(json.loads) -> timestamps -> WindowInto(Sessions) -> CombinePerKey(first, last, n)."""
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | beam.io.ReadFromText(str(path))
            | beam.Map(json.loads)
            | beam.Map(lambda e: (e["user_id"], parse_timestamp(e["ts"])))
            | beam.Map(lambda kv: beam.window.TimestampedValue(kv, kv[1]))
            | beam.WindowInto(beam.window.Sessions(GAP))
            | beam.CombinePerKey(_FirstLastCount())
            | beam.MapTuple(lambda user, acc: _session_row(user, *acc))
            | beam.io.WriteToText(str(out))
        )
    return -1


def _session_suite(path: Path, out: Path) -> int:
    args = [*file_args(path, out), "--key_field=user_id", "--gap=5m", EVENTS_SCHEMA]
    return run_suite("sessionize", args).count("written")


JOB = Job(
    events_file, {**loops(_session_loop), "naive_beam": _session_naive, "suite": _session_suite}
)
