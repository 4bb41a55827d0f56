"""The benchmark jobs: each the same job done three ways (plain loops, naive Beam, the suite).

Every variant reads the same generated file and writes its output (rows, dead letters, final
tables or Redis hashes), so each does the whole job. Variants are ``fn(path, out) -> int``;
``out`` is a fresh path in a fresh temporary folder.

Jobs:

* ``parse_dlq``: parse JSON, validate against ``pipelines/schemas/events.json`` (required
  fields, types, no unknown fields, a readable ``ts``), write good records and dead letters
  (1% malformed input). Suite: ``events_to_bigquery`` file -> file.
* ``window_agg``: per user and tumbling minute: count, sum and mean of ``latency_ms``. Suite:
  ``metrics_to_redis`` file -> file.
* ``hopping_agg``: per user and hopping 5-minute window every minute: count and mean of
  ``latency_ms``. Suite: ``metrics_to_redis`` file -> file.
* ``session``: sessions per user, 5-minute gap: start, end (last event), count, duration.
  Suite: ``sessionize`` file -> file.
* ``cdc_apply``: Debezium Postgres changes over 10k keys -> the final table (latest change per
  key by LSN, deleted keys absent). Suite: ``cdc_replicate`` file -> file.
* ``redis_sink``: one Redis hash per event (``HSET prefix:event_id``). Suite: ``events_to_bigquery``
  file -> ``redis://...?mode=hash``. Needs Redis on 127.0.0.1:6390.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam import coders
from apache_beam.pvalue import TaggedOutput

from bench.data import cdc_file, events_file
from transforms.errors import BadTimestamp
from transforms.event_time import format_timestamp, parse_timestamp

Variant = Callable[[Path, Path], int]
Decode = Callable[[bytes], Any]

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 60
HOP_SIZE, HOP_EVERY = 300, 60
GAP = 300
CDC_KEYS = 10_000
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6390
REDIS_BATCH = 500


def _decoder(name: str) -> Decode:
    if name == "json":
        return json.loads
    if name == "orjson":
        import orjson

        return orjson.loads
    import msgspec

    return msgspec.json.Decoder().decode


def _loops(body: Callable[[Decode, Path, Path], int]) -> dict[str, Variant]:
    """The plain loop with each JSON decoder: json (the baseline), orjson, msgspec."""
    return {
        f"loop_{name}": (lambda path, out, name=name: body(_decoder(name), path, out))
        for name in ("json", "orjson", "msgspec")
    }


def _suite(name: str, args: list[str]) -> Any:
    from pipelines.catalog import get_pipeline
    from pipelines.run import run_pipeline

    report = run_pipeline(get_pipeline(name), args)
    assert report.balanced, report.render()
    return report


def _file_args(path: Path, out: Path) -> list[str]:
    return [f"--source=file://{path}", f"--sink=file://{out}",
            f"--dead_letter=file://{out}-dead-letter"]  # fmt: skip


# --- parse_dlq ------------------------------------------------------------------------------

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
    return _suite("events_to_bigquery", _file_args(path, out)).count("written")


# --- window_agg and hopping_agg ---------------------------------------------------------------


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
        return _suite("metrics_to_redis", [*_file_args(path, out), f"--spec={spec}"]).count(
            "written"
        )

    return run


# --- session --------------------------------------------------------------------------------


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
    args = [*_file_args(path, out), "--key_field=user_id", "--gap=5m"]
    return _suite("sessionize", args).count("written")


# --- cdc_apply ------------------------------------------------------------------------------


def _change(event: dict[str, Any]) -> tuple[tuple[str, Any], tuple[int, str, Any]]:
    """(table, id) -> (lsn, op, new row), as a user reads a Debezium event."""
    source = event["source"]
    image = event["after"] or event["before"]
    table = f"{source['schema']}.{source['table']}"
    return (table, image["id"]), (source["lsn"], event["op"], event["after"])


def _final_row(table: str, row: dict[str, Any]) -> str:
    return json.dumps({"table": table, "row": row})


def _cdc_loop(decode: Decode, path: Path, out: Path) -> int:
    state: dict[tuple[str, Any], tuple[int, str, Any]] = {}
    with path.open("rb") as lines:
        for line in lines:
            key, change = _change(decode(line))
            current = state.get(key)
            if current is None or change[0] > current[0]:
                state[key] = change
    rows = 0
    with out.open("w") as table_rows:
        for (table, _), (_, op, row) in state.items():
            if op != "d":
                table_rows.write(_final_row(table, row) + "\n")
                rows += 1
    return rows


def _latest(kv: tuple[tuple[str, Any], Any]) -> Iterator[str]:
    (table, _), changes = kv
    _, op, row = max(changes, key=lambda change: change[0])
    if op != "d":
        yield _final_row(table, row)


def _cdc_naive(path: Path, out: Path) -> int:
    """Map(json.loads) -> key by primary key -> GroupByKey -> the max LSN per key."""
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | beam.io.ReadFromText(str(path))
            | beam.Map(json.loads)
            | beam.Map(_change)
            | beam.GroupByKey()
            | beam.FlatMap(_latest)
            | beam.io.WriteToText(str(out))
        )
    return -1


def _cdc_suite(path: Path, out: Path) -> int:
    args = [*_file_args(path, out), "--format=debezium",
            "--key_columns=inventory.customers=id"]  # fmt: skip
    return _suite("cdc_replicate", args).count("written")


# --- redis_sink -----------------------------------------------------------------------------


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
    return _suite("events_to_bigquery", args).count("written")


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


# --- the jobs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A benchmark job.

    Attributes:
        data: makes (once) the input file: ``data(folder, count, keys) -> path``.
        variants: the variants, by name; ``loop_json`` is the baseline.
        keys: a fixed key count (the ``--keys`` option is then ignored).
        unavailable: returns why the job cannot run here, or None.
        cleanup: run after a variant (outside its timing), returns a count to show.
    """

    data: Callable[[Path, int, int], Path]
    variants: dict[str, Variant]
    keys: int | None = None
    unavailable: Callable[[], str | None] | None = None
    cleanup: Callable[[Path], int] | None = field(default=None)


JOBS: dict[str, Job] = {
    "parse_dlq": Job(
        lambda folder, count, keys: events_file(folder, count, keys, malformed=0.01),
        {**_loops(_parse_loop), "naive_beam": _parse_naive, "suite": _parse_suite},
    ),
    "window_agg": Job(
        events_file,
        {
            **_loops(lambda decode, path, out: _window_loop(decode, path, out, WINDOW, WINDOW)),
            "naive_beam": lambda path, out: _window_naive(
                path, out, beam.window.FixedWindows(WINDOW), _MeanSum()
            ),
            "suite": _metrics_suite(WINDOW_SPEC),
        },
    ),
    "hopping_agg": Job(
        events_file,
        {
            **_loops(
                lambda decode, path, out: _window_loop(decode, path, out, HOP_SIZE, HOP_EVERY)
            ),
            "naive_beam": lambda path, out: _window_naive(
                path, out, beam.window.SlidingWindows(HOP_SIZE, HOP_EVERY), _CountMean()
            ),
            "suite": _metrics_suite(HOP_SPEC),
        },
    ),
    "session": Job(
        events_file,
        {**_loops(_session_loop), "naive_beam": _session_naive, "suite": _session_suite},
    ),
    "cdc_apply": Job(
        cdc_file,
        {**_loops(_cdc_loop), "naive_beam": _cdc_naive, "suite": _cdc_suite},
        keys=CDC_KEYS,
    ),
    "redis_sink": Job(
        events_file,
        {**_loops(_redis_loop), "naive_beam": _redis_naive, "suite": _redis_suite},
        unavailable=redis_unavailable,
        cleanup=redis_cleanup,
    ),
}
