"""Peak memory of the ``bounded_memory`` job's variants, measured in one run.

    .venv/bin/python -m bench.memory --events 1000000

Each variant runs in its own process (`bench.run`'s child); prints its peak RSS in MiB and the
difference and ratio to the ``jsonl`` variant.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.jobs.bounded_memory import JOB
from bench.run import _measure_in_child


def main(argv: list[str] | None = None) -> int:
    """Measures the variants in one run; prints peak RSS and differences to ``jsonl``."""
    parser = argparse.ArgumentParser(prog="bench.memory")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args(argv)
    path = JOB.data(Path(tempfile.gettempdir()) / "suite-bench", args.events, args.keys)
    peaks = {
        variant: _measure_in_child("bounded_memory", variant, path)["peak_mib"]
        for variant in JOB.variants
    }
    base = peaks["jsonl"]
    for variant, peak in peaks.items():
        print(json.dumps({"events": args.events, "variant": variant, "peak_mib": round(peak),
                          "minus_jsonl_mib": round(peak - base),
                          "x_jsonl": round(peak / base, 2)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
