"""``redis_sink``: the Redis sink itself, one hash per event (``HSET prefix:event_id``).

Every variant writes the same records, the events of the job's file decoded with msgspec in
blocks of a few megabytes (memory stays flat; the decode, about 1 µs an event, is in every
variant's time), to Redis on 127.0.0.1:6390, each under its own key prefix. No variant parses
with the suite's schema: what is measured is the write. The variants:

* ``raw_redis_py`` (the baseline): raw redis-py, pipelined: ``HSET key mapping`` of the non-null
  fields, 500 commands a round trip. On fresh keys it leaves the same hashes as the sink (the
  sink also removes null fields, ``HDEL``, which here removes nothing).
* ``sink_direct``: the suite's sink DoFn (`transforms.io.redis.sink.RedisSink.write_fn`, hash mode,
  no TTL, batches of 500) driven by hand, without a runner: ``setup``, ``start_bundle``,
  ``process`` per block of records, ``finish_bundle``. This is the sink's throughput per
  worker, without Beam's per-element cost (a runner adds the same cost to any DoFn).
* ``sink_direct_ttl``: the same, with ``ttl=3600``: each write is then a Lua script call (the
  write and its TTL, atomically).
* ``naive_beam``: a Beam pipeline, file -> ``Map(decode)`` -> a DoFn with a redis-py client
  from ``setup`` and one ``HSET`` (one round trip) per element.
* ``suite``: the same pipeline with the suite's ``RedisSink`` (hash mode, no TTL) instead, the
  records in blocks (`transforms.blocks.Batch`); it checks that the sink dead-lettered nothing.

The suite's modules are imported with this one, before the harness starts its clock. Rates
and ratios compare variants measured back to back; other processes on the machine (and
the Redis server, on the same cores) move the absolute figures.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.coders.coders import BytesCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP

from bench.data import events_file
from bench.jobs.common import Job
from transforms.blocks import BLOCK_SIZE, Batch, Block
from transforms.io.base import SinkContext
from transforms.io.registry import make_sink
from transforms.message import Record
from transforms.metrics import counter_totals

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6390
REDIS_BATCH = 500
TTL_SECONDS = 3600
READ_BYTES = 4 << 20  # the records are decoded a block of this size at a time


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


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """Yields the events of a JSON Lines file, decoded a block of lines at a time."""
    decode_lines = msgspec.json.Decoder().decode_lines
    rest = b""
    with path.open("rb") as lines:
        while block := lines.read(READ_BYTES):
            block, _, after = (rest + block).rpartition(b"\n")
            rest = after
            yield from decode_lines(block)
    if rest.strip():
        yield from decode_lines(rest)


def _hash(event: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in event.items() if value is not None}


def _raw_pipelined(path: Path, out: Path) -> int:
    """redis-py's pipeline, ``REDIS_BATCH`` HSETs a round trip."""
    prefix = _prefix(out)
    pipe = _redis().pipeline(transaction=False)
    count = 0
    for count, event in enumerate(_records(path), start=1):
        pipe.hset(prefix + event["event_id"], mapping=_hash(event))
        if count % REDIS_BATCH == 0:
            pipe.execute()
    pipe.execute()
    return count


def _sink(out: Path, options: str = "") -> Any:
    """The suite's Redis sink, hash mode, keyed by ``event_id`` under the run's prefix."""
    uri = (f"redis://{REDIS_HOST}:{REDIS_PORT}/0?mode=hash&key={_prefix(out)}{{event_id}}"
           f"&batch_size={REDIS_BATCH}{options}")  # fmt: skip
    return make_sink(uri, SinkContext(pipeline="bench"))


def _sink_direct(path: Path, out: Path, options: str = "") -> int:
    """The sink's DoFn driven by hand, one bundle; fails on any dead letter."""
    fn = _sink(out, options).write_fn()
    window = GlobalWindow()
    dead_letters: list[Any] = []
    count = 0
    fn.setup()
    fn.start_bundle()
    events = _records(path)
    while block := Block(Record(event) for event in itertools.islice(events, BLOCK_SIZE)):
        dead_letters += fn.process(block, MIN_TIMESTAMP, window)
        count += len(block)
    dead_letters += fn.finish_bundle()
    fn.teardown()
    assert not dead_letters, dead_letters[:3]
    return count


def _sink_direct_ttl(path: Path, out: Path) -> int:
    return _sink_direct(path, out, f"&ttl={TTL_SECONDS}")


def _read(pipeline: beam.Pipeline, path: Path) -> beam.PCollection:
    """The file's events, read and decoded inside the pipeline."""
    return (
        pipeline
        | beam.io.ReadFromText(str(path), coder=BytesCoder())
        | "Decode" >> beam.Map(msgspec.json.decode)
    )


class _HsetFn(beam.DoFn):
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def setup(self) -> None:
        self._client = _redis()

    def process(self, event: dict[str, Any]) -> None:
        self._client.hset(self._prefix + event["event_id"], mapping=_hash(event))


def _redis_naive(path: Path, out: Path) -> int:
    """File -> decode -> a DoFn with a client made in setup, one HSET per element."""
    with beam.Pipeline() as pipeline:
        _ = _read(pipeline, path) | beam.ParDo(_HsetFn(_prefix(out)))
    return -1


def _redis_suite(path: Path, out: Path) -> int:
    """File -> decode -> the suite's RedisSink; checks that it dead-lettered nothing."""
    pipeline = beam.Pipeline()
    records = _read(pipeline, path) | "Records" >> beam.Map(Record)
    assert_that(records | Batch() | _sink(out), equal_to([]))
    result = pipeline.run()
    result.wait_until_finish()
    return counter_totals(result.metrics()).get("written", 0)


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
    {
        "raw_redis_py": _raw_pipelined,
        "sink_direct": _sink_direct,
        "sink_direct_ttl": _sink_direct_ttl,
        "naive_beam": _redis_naive,
        "suite": _redis_suite,
    },
    unavailable=redis_unavailable,
    cleanup=redis_cleanup,
)
