"""Runs the benchmarks and writes bench/results/RESULTS.md (and RESULTS.png with matplotlib).

    .venv/bin/python -m bench.run                 # 100k and 1M events, 1k keys
    .venv/bin/python -m bench.run --events 100000 --keys 1000 100000

Each variant runs in its own process (so peak memory is its own); rates are events per second
and ratios are against the plain ``json`` loop measured in the same run. Speed is never asserted
by tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.data import events_file
from bench.jobs import VARIANTS

RESULTS = Path(__file__).resolve().parent / "results"


def _measure_in_child(variant: str, path: Path) -> dict[str, float]:
    """Runs one variant in a fresh process; returns its seconds and peak memory (MiB)."""
    code = (
        "import json, resource, sys, time, tempfile; from pathlib import Path;"
        "from bench.jobs import VARIANTS;"
        "out = Path(tempfile.mkdtemp()) / 'rows';"
        f"start = time.perf_counter(); VARIANTS[{variant!r}](Path({str(path)!r}), out);"
        "seconds = time.perf_counter() - start;"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024;"
        "print(json.dumps({'seconds': seconds, 'peak_mib': peak}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Measures every variant for every size; prints and writes the results table."""
    parser = argparse.ArgumentParser(prog="bench.run")
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keys", type=int, nargs="+", default=[1000])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    data = Path(tempfile.gettempdir()) / "suite-bench"
    rows = []
    for keys in args.keys:
        for count in args.events:
            path = events_file(data, count, keys)
            base = None
            for variant in args.variants:
                measured = _measure_in_child(variant, path)
                rate = count / measured["seconds"]
                if variant == "loop_json":
                    base = rate
                rows.append({"job": "window_agg", "events": count, "keys": keys,
                             "variant": variant, "events_per_s": rate,
                             "vs_json_loop": rate / base if base else None,
                             "peak_mib": measured["peak_mib"]})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    _write(rows)
    return 0


def _write(rows: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    lines = [
        f"Measured {dt.date.today()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; one process per variant.",
        "",
        "| job | events | keys | variant | events/s | x json loop | peak MiB |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        ratio = "" if row["vs_json_loop"] is None else f"{row['vs_json_loop']:.2f}"
        lines.append(
            f"| {row['job']} | {row['events']:,} | {row['keys']:,} | {row['variant']} | "
            f"{row['events_per_s']:,.0f} | {ratio} | {row['peak_mib']:,.0f} |"
        )
    (RESULTS / "RESULTS.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axis = plt.subplots(figsize=(8, 4))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        points = [(r["events"], r["events_per_s"]) for r in rows if r["variant"] == variant]
        axis.plot(*zip(*points, strict=True), marker="o", label=variant)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("events")
    axis.set_ylabel("events/s")
    axis.set_title(f"window_agg, {dt.date.today()}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(RESULTS / "RESULTS.png")


if __name__ == "__main__":
    sys.exit(main())
