"""``bounded_memory``: peak memory of the suite with a 200 MB line, and writing Parquet.

Every variant is the suite's ``events_to_bigquery``, file -> file, on the same events:

* ``jsonl`` (the baseline): to JSON Lines;
* ``parquet``: to Parquet (``?format=parquet``), with the events schema (row groups written as
  they fill);
* ``huge_line``: to JSON Lines, from a copy of the events with one line of 200 MB in the middle
  (written in chunks before the run), which the source skips while reading and dead-letters as
  ``too_large`` with a 64 KiB prefix.

What is compared is peak memory, not speed: ``python -m bench.memory --events N`` runs the
variants in their own processes in one run and prints each one's peak RSS and its difference to
the baseline (``python -m bench.run --job bounded_memory`` gives the usual table).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from bench.data import events_file
from bench.jobs.common import Job, file_args, run_suite

HUGE_LINE_BYTES = 200 * 1024 * 1024
_PIECE = 1 << 20


def _with_huge_line(path: Path, out: Path) -> Path:
    """Writes a copy of ``path`` with a 200 MB JSON line in its middle, a piece at a time."""
    copy = out.parent / f"huge-{path.name}"
    with path.open("rb") as lines:
        middle = sum(1 for _ in lines) // 2
    with path.open("rb") as lines, copy.open("wb") as handle:
        handle.writelines(itertools.islice(lines, middle))
        handle.write(b'{"pad": "')
        for _ in range(HUGE_LINE_BYTES // _PIECE):
            handle.write(b"x" * _PIECE)
        handle.write(b'"}\n')
        handle.writelines(lines)
    return copy


def _suite(path: Path, out: Path, query: str = "", *options: str) -> int:
    args = file_args(path, out)
    args[1] += query
    return run_suite("events_to_bigquery", [*args, *options]).count("written")


def _huge_line(path: Path, out: Path) -> int:
    report = run_suite("events_to_bigquery", file_args(_with_huge_line(path, out), out))
    assert report.count("dead_lettered") >= 1, report.render()
    return report.count("written")


JOB = Job(
    lambda folder, count, keys: events_file(folder, count, keys),
    {
        "jsonl": _suite,
        "parquet": lambda path, out: _suite(
            path, out, "?format=parquet", "--schema=builtin:events"
        ),
        "huge_line": _huge_line,
    },
)
