"""Runs the benchmarks and writes bench/results/RESULTS.md (and RESULTS.png with matplotlib).

    .venv/bin/python -m bench.run                                  # every job, 100k events
    .venv/bin/python -m bench.run --job window_agg --keys 1000 100000
    .venv/bin/python -m bench.run --job cdc_apply session --events 100000 1000000
    .venv/bin/python -m bench.run --job window_agg --events 2000000 --append

Each variant runs in its own process (so peak memory is its own); rates are events per second
and ratios are against the job's baseline (its first variant, mostly the plain ``json`` loop)
and its ``naive_beam`` variant, measured in the same run. Speed is never asserted by tests.
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

from bench.jobs import JOBS

RESULTS = Path(__file__).resolve().parent / "results"

# Every variant runs with the garbage collector set as the command line sets it for a run
# (`run_collector`), unless ``--default_gc``: Python's defaults, as a managed runner's SDK
# harness has them.
_CHILD = """
import contextlib, json, resource, sys, tempfile, time
from pathlib import Path
from bench.jobs import JOBS
from pipelines.framework.run import run_collector
job, variant, path = JOBS[sys.argv[1]], sys.argv[2], Path(sys.argv[3])
collector = contextlib.nullcontext() if sys.argv[4] == "default" else run_collector()
out = Path(tempfile.mkdtemp(prefix="suite-bench-")) / "rows"
start = time.perf_counter()
with collector:
    job.variants[variant](path, out)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
files = [f for f in out.parent.rglob("*") if f.is_file() and not f.name.startswith(".")]
lines = sum(sum(1 for _ in f.open("rb")) for f in files if f.suffix != ".parquet")
cleaned = job.cleanup(out) if job.cleanup else None
print(json.dumps({"seconds": seconds, "peak_mib": peak, "out_lines": lines, "cleaned": cleaned}))
"""


def _measure_in_child(job: str, variant: str, path: Path, gc: str) -> dict[str, float]:
    """Runs one variant in a fresh process; returns its seconds, peak memory (MiB), output.

    ``gc`` is ``run`` (the collector as a run of the command line sets it) or ``default``.
    """
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, job, variant, str(path), gc], capture_output=True, text=True,
        check=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Measures every variant of every job for every size; prints and writes the results."""
    parser = argparse.ArgumentParser(prog="bench.run")
    parser.add_argument("--job", nargs="+", default=list(JOBS), choices=list(JOBS))
    parser.add_argument("--events", type=int, nargs="+", default=[100_000])
    parser.add_argument("--keys", type=int, nargs="+", default=[1000])
    parser.add_argument(
        "--variants", nargs="+", help="run only these variants (default: every variant of a job)"
    )
    parser.add_argument("--append", action="store_true", help="add to (or update) the last results")
    parser.add_argument(
        "--default_gc", action="store_true",
        help="run every variant with Python's default garbage collector settings (as a managed "
        "runner's SDK harness), not as the command line sets them for a run",
    )  # fmt: skip
    args = parser.parse_args(argv)
    data = Path(tempfile.gettempdir()) / "suite-bench"
    saved = RESULTS / "RESULTS.json"
    rows = json.loads(saved.read_text()) if args.append and saved.exists() else []
    gc = "default" if args.default_gc else "run"
    for name in args.job:
        job = JOBS[name]
        reason = job.unavailable() if job.unavailable else None
        if reason:
            print(f"skipping {name}: {reason}", flush=True)
            continue
        for keys in [job.keys] if job.keys else args.keys:
            for count in args.events:
                path = job.data(data, count, keys)
                base = naive = None
                variants = list(job.variants)
                for variant in [v for v in variants if not args.variants or v in args.variants]:
                    try:
                        measured = _measure_in_child(name, variant, path, gc)
                    except subprocess.CalledProcessError as exc:
                        print(f"{name} {variant} failed:\n{exc.stderr[-3000:]}", flush=True)
                        continue
                    rate = count / measured["seconds"]
                    if variant == variants[0]:
                        base = rate
                    if variant == "naive_beam":
                        naive = rate
                    label = f"{name} (default gc)" if args.default_gc else name
                    case = (label, count, keys, variant)
                    rows = [r for r in rows if _case(r) != case]
                    rows.append({"job": label, "events": count, "keys": keys,
                                 "variant": variant, "events_per_s": rate,
                                 "vs_baseline": rate / base if base else None,
                                 "vs_naive_beam": rate / naive if naive else None,
                                 "peak_mib": measured["peak_mib"]})  # fmt: skip
                    check = {k: measured[k] for k in ("out_lines", "cleaned") if measured[k]}
                    print(json.dumps({**rows[-1], **check}), flush=True)
    _write(rows)
    return 0


def _case(row: dict) -> tuple[str, int, int, str]:
    return row["job"], row["events"], row["keys"], row["variant"]


def _write(rows: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "RESULTS.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        f"Measured {dt.date.today()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; one process per variant.",
        "",
        "| job | events | keys | variant | events/s | x baseline | x naive Beam | peak MiB |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratios = [
            "" if row[name] is None else f"{row[name]:.2f}"
            for name in ("vs_baseline", "vs_naive_beam")
        ]
        lines.append(
            f"| {row['job']} | {row['events']:,} | {row['keys']:,} | {row['variant']} | "
            f"{row['events_per_s']:,.0f} | {' | '.join(ratios)} | {row['peak_mib']:,.0f} |"
        )
    (RESULTS / "RESULTS.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    cases = list(dict.fromkeys((r["job"], r["events"], r["keys"]) for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    rates = {(r["job"], r["events"], r["keys"], r["variant"]): r["events_per_s"] for r in rows}
    figure, axis = plt.subplots(figsize=(max(8, 1.6 * len(cases)), 4.5))
    width = 0.8 / max(1, len(variants))
    for offset, variant in enumerate(variants):
        heights = [rates.get((*case, variant), 0) for case in cases]
        positions = [index + offset * width for index in range(len(cases))]
        axis.bar(positions, heights, width, label=variant)
    axis.set_xticks([index + 0.4 - width / 2 for index in range(len(cases))])
    axis.set_xticklabels([f"{j}\n{n:,} ev, {k:,} keys" for j, n, k in cases], fontsize=7)
    axis.set_yscale("log")
    axis.set_ylabel("events/s")
    axis.set_title(f"bench, {dt.date.today()}, {platform.machine()}, {os.cpu_count()} cores")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(RESULTS / "RESULTS.png")


if __name__ == "__main__":
    sys.exit(main())
