"""``window_agg`` and ``hopping_agg``: per user and window, count, sum and mean of ``latency_ms``.

``window_agg`` uses tumbling minutes; ``hopping_agg`` 5-minute windows every minute (count and
mean). Suite: ``metrics_to_redis`` file -> file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apache_beam as beam

from bench.data import events_file
from bench.jobs.common import EVENTS_SCHEMA, Decode, Job, Variant, file_args, loops, run_suite
from transforms.event_time import parse_timestamp

WINDOW = 60
HOP_SIZE, HOP_EVERY = 300, 60


def _window_loop(decode: Decode, path: Path, out: Path, size: int, every: int) -> int:
    """Count, sum and mean of latency_ms per user and window (``size`` long, every ``every``)."""
    groups: dict[tuple[str, int], list[float]] = {}
    with path.open("rb") as lines:
        for line in lines:
            event = decode(line)
            last = int(parse_timestamp(event["ts"]) // every) * every
            for start in range(last - size + every, last + every, every):
                group = groups.get((event["user_id"], start))
                if group is None:
                    groups[(event["user_id"], start)] = group = [0, 0.0]
                group[0] += 1
                group[1] += event["latency_ms"]
    with out.open("w") as rows:
        for (user, start), (n, total) in groups.items():
            row = {"user_id": user, "window_start": start, "events": n,
                   "total_latency_ms": total, "avg_latency_ms": total / n}  # fmt: skip
            if size != every:
                del row["total_latency_ms"]
            rows.write(json.dumps(row) + "\n")
    return len(groups)


class _MeanSum(beam.CombineFn):
    def create_accumulator(self) -> tuple[int, float]:
        return 0, 0.0

    def add_input(self, acc: tuple[int, float], value: float) -> tuple[int, float]:
        return acc[0] + 1, acc[1] + value

    def merge_accumulators(self, accs: Any) -> tuple[int, float]:
        accs = list(accs)
        return sum(a[0] for a in accs), sum(a[1] for a in accs)

    def extract_output(self, acc: tuple[int, float]) -> dict[str, float]:
        return {"events": acc[0], "total_latency_ms": acc[1], "avg_latency_ms": acc[1] / acc[0]}


class _CountMean(_MeanSum):
    def extract_output(self, acc: tuple[int, float]) -> dict[str, float]:
        return {"events": acc[0], "avg_latency_ms": acc[1] / acc[0]}


def _row(kv: tuple[str, dict[str, float]], window: Any = beam.DoFn.WindowParam) -> str:
    return json.dumps({"user_id": kv[0], "window_start": float(window.start), **kv[1]})


def _window_naive(path: Path, out: Path, windows: Any, combine: beam.CombineFn) -> int:
    """The way the docs suggest: Map(json.loads) -> WindowInto -> CombinePerKey."""
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | beam.io.ReadFromText(str(path))
            | beam.Map(json.loads)
            | beam.Map(lambda e: beam.window.TimestampedValue(e, parse_timestamp(e["ts"])))
            | beam.WindowInto(windows)
            | beam.Map(lambda e: (e["user_id"], e["latency_ms"]))
            | beam.CombinePerKey(combine)
            | beam.Map(_row)
            | beam.io.WriteToText(str(out))
        )
    return -1


WINDOW_SPEC = (
    "window: {type: tumbling, size: 60s}\ngroup_by: [user_id]\nevent_time: ts\n"
    "aggregates: {events: count(), total_latency_ms: sum(latency_ms), "
    "avg_latency_ms: mean(latency_ms)}"
)
HOP_SPEC = (
    "window: {type: hopping, size: 5m, every: 1m}\ngroup_by: [user_id]\nevent_time: ts\n"
    "aggregates: {events: count(), avg_latency_ms: mean(latency_ms)}"
)


def _metrics_suite(spec: str) -> Variant:
    def run(path: Path, out: Path) -> int:
        args = [*file_args(path, out), f"--spec={spec}", EVENTS_SCHEMA]
        return run_suite("metrics_to_redis", args).count("written")

    return run


WINDOW_JOB = Job(
    events_file,
    {
        **loops(lambda decode, path, out: _window_loop(decode, path, out, WINDOW, WINDOW)),
        "naive_beam": lambda path, out: _window_naive(
            path, out, beam.window.FixedWindows(WINDOW), _MeanSum()
        ),
        "suite": _metrics_suite(WINDOW_SPEC),
    },
)
HOPPING_JOB = Job(
    events_file,
    {
        **loops(lambda decode, path, out: _window_loop(decode, path, out, HOP_SIZE, HOP_EVERY)),
        "naive_beam": lambda path, out: _window_naive(
            path, out, beam.window.SlidingWindows(HOP_SIZE, HOP_EVERY), _CountMean()
        ),
        "suite": _metrics_suite(HOP_SPEC),
    },
)
