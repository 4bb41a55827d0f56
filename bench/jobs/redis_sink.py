"""``redis_sink``: one Redis hash per event (``HSET prefix:event_id``).

Suite: ``events_to_bigquery`` file -> ``redis://...?mode=hash``. Needs Redis on 127.0.0.1:6390.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apache_beam as beam

from bench.data import events_file
from bench.jobs.common import Decode, Job, loops, run_suite

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6390
REDIS_BATCH = 500


def _redis() -> Any:
    import redis

    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=10)


def redis_unavailable() -> str | None:
    """Returns why the Redis benchmark cannot run, or None when Redis answers."""
    try:
        _redis().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means skip
        return f"no Redis on {REDIS_HOST}:{REDIS_PORT} ({exc.__class__.__name__})"
    return None


def _prefix(out: Path) -> str:
    """A key prefix unique to the run (its temporary folder)."""
    return f"bench:{out.parent.name}:"


def _hash(event: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in event.items() if value is not None}


def _redis_loop(decode: Decode, path: Path, out: Path) -> int:
    prefix = _prefix(out)
    pipe = _redis().pipeline(transaction=False)
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            event = decode(line)
            pipe.hset(prefix + event["event_id"], mapping=_hash(event))
            if number % REDIS_BATCH == 0:
                pipe.execute()
    pipe.execute()
    return number


class _HsetFn(beam.DoFn):
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def setup(self) -> None:
        self._client = _redis()

    def process(self, event: dict[str, Any]) -> None:
        self._client.hset(self._prefix + event["event_id"], mapping=_hash(event))


def _redis_naive(path: Path, out: Path) -> int:
    """Map(json.loads) -> a DoFn with a client made in setup, one HSET per element."""
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | beam.io.ReadFromText(str(path))
            | beam.Map(json.loads)
            | beam.ParDo(_HsetFn(_prefix(out)))
        )
    return -1


def _redis_suite(path: Path, out: Path) -> int:
    sink = (f"redis://{REDIS_HOST}:{REDIS_PORT}/0?mode=hash&key={_prefix(out)}{{event_id}}"
            f"&batch_size={REDIS_BATCH}")  # fmt: skip
    args = [f"--source=file://{path}", f"--sink={sink}",
            f"--dead_letter=file://{out}-dead-letter"]  # fmt: skip
    return run_suite("events_to_bigquery", args).count("written")


def redis_cleanup(out: Path) -> int:
    """Deletes the run's keys (SCAN by its prefix, never FLUSHALL); returns how many."""
    client = _redis()
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=_prefix(out) + "*", count=1000):
        batch.append(key)
        if len(batch) == 1000:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted


JOB = Job(
    events_file,
    {**loops(_redis_loop), "naive_beam": _redis_naive, "suite": _redis_suite},
    unavailable=redis_unavailable,
    cleanup=redis_cleanup,
)
