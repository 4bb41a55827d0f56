"""The benchmark jobs: the same job done three ways (plain loop, naive Beam, the suite).

Job ``window_agg``: parse JSON events, then per user and tumbling minute of event time count
the events, sum and average ``latency_ms``. Each variant reads the same file and writes its
rows, so each does the whole job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apache_beam as beam

from transforms.event_time import parse_timestamp

WINDOW = 60
SPEC = (
    "window: {type: tumbling, size: 60s}\ngroup_by: [user_id]\nevent_time: ts\n"
    "aggregates: {events: count(), total_latency_ms: sum(latency_ms), "
    "avg_latency_ms: mean(latency_ms)}"
)


def _loop(decode: Callable[[bytes], Any], path: Path, out: Path) -> int:
    """The plain-Python job with a given JSON decoder; returns the number of rows."""
    groups: dict[tuple[str, int], list[float]] = {}
    with path.open("rb") as lines:
        for line in lines:
            event = decode(line)
            minute = int(parse_timestamp(event["ts"]) // WINDOW) * WINDOW
            group = groups.get((event["user_id"], minute))
            if group is None:
                groups[(event["user_id"], minute)] = group = [0, 0.0]
            group[0] += 1
            group[1] += event["latency_ms"]
    with out.open("w") as rows:
        for (user, minute), (n, total) in groups.items():
            row = {"user_id": user, "window_start": minute, "events": n,
                   "total_latency_ms": total, "avg_latency_ms": total / n}  # fmt: skip
            rows.write(json.dumps(row) + "\n")
    return len(groups)


def loop_json(path: Path, out: Path) -> int:
    """Plain loop, standard library json (the baseline)."""
    return _loop(json.loads, path, out)


def loop_orjson(path: Path, out: Path) -> int:
    """Plain loop, orjson."""
    import orjson

    return _loop(orjson.loads, path, out)


def loop_msgspec(path: Path, out: Path) -> int:
    """Plain loop, msgspec."""
    import msgspec

    return _loop(msgspec.json.Decoder().decode, path, out)


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


def _row(kv: tuple[str, dict[str, float]], window: Any = beam.DoFn.WindowParam) -> str:
    return json.dumps({"user_id": kv[0], "window_start": float(window.start), **kv[1]})


def naive_beam(path: Path, out: Path) -> int:
    """The way the docs suggest: Map(json.loads) -> WindowInto -> CombinePerKey."""
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | beam.io.ReadFromText(str(path))
            | beam.Map(json.loads)
            | beam.Map(lambda e: beam.window.TimestampedValue(e, parse_timestamp(e["ts"])))
            | beam.WindowInto(beam.window.FixedWindows(WINDOW))
            | beam.Map(lambda e: (e["user_id"], e["latency_ms"]))
            | beam.CombinePerKey(_MeanSum())
            | beam.Map(_row)
            | beam.io.WriteToText(str(out))
        )
    return -1


def suite(path: Path, out: Path) -> int:
    """The suite's metrics_to_redis pipeline, file to file (parse with schema, dead letters)."""
    from pipelines.catalog import get_pipeline
    from pipelines.run import run_pipeline

    report = run_pipeline(
        get_pipeline("metrics_to_redis"),
        [f"--source=file://{path}", f"--spec={SPEC}", f"--sink=file://{out}",
         f"--dead_letter=file://{out}-dead-letter"],
    )  # fmt: skip
    assert report.balanced
    return report.count("written")


VARIANTS: dict[str, Callable[[Path, Path], int]] = {
    "loop_json": loop_json,
    "loop_orjson": loop_orjson,
    "loop_msgspec": loop_msgspec,
    "naive_beam": naive_beam,
    "suite": suite,
}
