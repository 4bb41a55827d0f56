"""Tests of transforms.io.live: paced generator events streamed live on the DirectRunner.

`DirectLiveRead` relies on private classes of Beam 2.77's BundleBasedDirectRunner (its evaluator
registry and the streaming executor's state sampler); these tests keep that honest: a live
generator ends by itself, delivers every event, counts them all (the per-bundle metrics fix)
and closes windows while the source is still producing.

No timing is asserted: waits have generous deadlines, and "live" is shown by what the source
had produced when a window's row came out.
"""

from __future__ import annotations

import calendar
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.runner import PipelineState

from pipelines.framework.spine import load_schema
from transforms.aggregate.spec import AggregateSpec
from transforms.aggregate.windowed import WindowedAggregate
from transforms.blocks import Unbatch
from transforms.errors import RecordError
from transforms.io.generator import BLOCK, GeneratorSource, PacedEvents
from transforms.io.live import DirectLiveRead
from transforms.io.registry import make_source
from transforms.message import Message
from transforms.metrics import Count, counter_totals
from transforms.parse import EventTime, ParseJson, parse_message

pytestmark = pytest.mark.usefixtures("live_direct_runner")

ROOT = Path(__file__).resolve().parents[3]
START = calendar.timegm((2026, 11, 25, 10, 0, 0))
START_ISO = "2026-11-25T10:00:00Z"
RUN_DEADLINE = 90.0

# Module-level collections: the DirectRunner runs DoFns in this process (on its own threads).
_LOCK = threading.Lock()
_COLLECTED: dict[str, list[Any]] = defaultdict(list)
_PRODUCED: dict[str, int] = defaultdict(int)


def _collect(tag: str, element: Any) -> None:
    with _LOCK:
        _COLLECTED[tag].append(element)


class _Collect(beam.DoFn):
    def __init__(self, tag: str) -> None:
        self._tag = tag

    def process(self, element: Any) -> None:
        _collect(self._tag, element)


class _RecordBundles(beam.DoFn):
    """Collects ``(bundle id, message)`` of blocks of messages: a new id at every start_bundle."""

    def __init__(self, tag: str) -> None:
        self._tag = tag

    def start_bundle(self) -> None:
        self._bundle = uuid.uuid4().hex

    def process(self, block: list[Message]) -> None:
        for message in block:
            _collect(self._tag, (self._bundle, message))


class _Produced(beam.DoFn):
    """Counts the messages the source has produced so far (blocks, right after the source)."""

    def __init__(self, tag: str) -> None:
        self._tag = tag

    def process(self, block: list[Message]) -> Any:
        with _LOCK:
            _PRODUCED[self._tag] += len(block)
        yield block


class _RowProgress(beam.DoFn):
    """Collects ``(row, messages produced when the row came out)``."""

    def __init__(self, tag: str) -> None:
        self._tag = tag

    def process(self, record: Any) -> None:
        with _LOCK:
            produced = _PRODUCED[self._tag]
        _collect(self._tag + "rows", (record.data, produced))


def _source(uri: str) -> GeneratorSource:
    source = make_source(uri)
    assert isinstance(source, GeneratorSource)
    return source


def _uses_live_read(pipeline: beam.Pipeline) -> bool:
    found: list[Any] = []

    class Visitor(PipelineVisitor):
        def visit_transform(self, node: Any) -> None:
            found.append(node.transform)

        def enter_composite_transform(self, node: Any) -> None:
            found.append(node.transform)

    pipeline.visit(Visitor())
    return any(isinstance(transform, DirectLiveRead) for transform in found)


def _streaming_pipeline() -> beam.Pipeline:
    return beam.Pipeline(runner=BundleBasedDirectRunner(), options=PipelineOptions(streaming=True))


def _run_to_end(pipeline: beam.Pipeline) -> Any:
    """Runs the pipeline and waits (with a generous deadline) for it to end by itself."""
    result = pipeline.run()
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            outcome["state"] = result.wait_until_finish()
        except BaseException as error:  # re-raised below
            outcome["error"] = error

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(RUN_DEADLINE)
    if waiter.is_alive():
        result.cancel()
        pytest.fail(f"the live pipeline did not end by itself within {RUN_DEADLINE:g}s")
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["state"] == PipelineState.DONE
    return result


def _read_all(reader: PacedEvents, limit: int) -> list[tuple[list[Any], float, float]]:
    """Reads until done; returns ``(elements, watermark before, watermark after)`` per read."""
    reads = []
    deadline = time.monotonic() + RUN_DEADLINE
    while not reader.done:
        assert time.monotonic() < deadline, "the paced reader never finished"
        before = reader.watermark
        elements = reader.read(limit)
        reads.append((elements, before, reader.watermark))
    return reads


def _stamped(block: list[Message], ts: Any = beam.DoFn.TimestampParam) -> list[Any]:
    return [(message, float(ts)) for message in block]


def _bounded_messages(uri: str) -> dict[int, tuple[bytes, float]]:
    """Runs the bounded generator of ``uri``; returns ``{offset: (payload, block timestamp)}``."""
    tag = uuid.uuid4().hex
    with beam.Pipeline() as p:
        _ = (
            p
            | make_source(uri)
            | beam.FlatMap(
                lambda block, ts=beam.DoFn.TimestampParam: [(m, float(ts)) for m in block]
            )
            | beam.ParDo(_Collect(tag))
        )
    pairs = _COLLECTED.pop(tag)
    return {m.origin.offset: (m.payload, ts) for m, ts in pairs}


# ----------------------------------------------------------------- PacedEvents


def test_paced_events_in_index_order_with_watermark_of_next_event() -> None:
    source = _source(
        f"generator://events?count=300&rate=50&speed=200&live=true&seed=3&start={START_ISO}"
    )
    assert source.live and not source.bounded and source.finite and source.live_on_direct
    reader = source._paced()
    assert not reader.done
    assert reader.watermark == pytest.approx(START)

    reads = _read_all(reader, limit=7)
    assert reader.done
    elements = [e for batch, _, _ in reads for e in batch]
    assert all(len(batch) <= 7 for batch, _, _ in reads)
    assert len(reads) > 1

    # Index order, exactly count events, each stamped start + index / rate.
    offsets = [e.value.origin.offset for e in elements]
    assert offsets == list(range(300))
    for element in elements:
        index = element.value.origin.offset
        assert float(element.timestamp) == pytest.approx(START + index / 50)
        assert element.value.origin.message_id == f"e3-{index}"

    # The watermark never goes back and is the event time of the next event.
    marks = [reads[0][1]] + [after for _, _, after in reads]
    assert marks == sorted(marks)
    produced = 0
    for batch, before, after in reads:
        if batch:
            assert float(batch[0].timestamp) == pytest.approx(before)
        produced += len(batch)
        assert after == pytest.approx(START + produced / 50)
    assert reader.watermark == pytest.approx(START + 300 / 50)

    # Done: nothing more, ever.
    assert reader.read(100) == []
    assert reader.done


def test_paced_events_without_start_begin_at_first_read() -> None:
    source = _source("generator://events?count=20&rate=10&speed=1000&live=true")
    reader = source._paced()
    before = time.time()
    elements = [e for batch, _, _ in _read_all(reader, limit=1000) for e in batch]
    assert [e.value.origin.offset for e in elements] == list(range(20))
    first = float(elements[0].timestamp)
    assert first >= before - 1.0
    assert reader.watermark == pytest.approx(first + 20 / 10)


def test_paced_events_are_the_bounded_generators_events() -> None:
    query = f"count=300&rate=50&seed=3&malformed=0.1&late=0.1&start={START_ISO}"
    bounded = _bounded_messages(f"generator://events?{query}")
    assert sorted(bounded) == list(range(300))
    reader = _source(f"generator://events?{query}&live=true&speed=1000")._paced()
    paced = {
        e.value.origin.offset: (e.value.payload, float(e.timestamp))
        for batch, _, _ in _read_all(reader, limit=1000)
        for e in batch
    }
    assert sorted(paced) == list(range(300))
    for index in range(300):
        # A bounded block is at the time of its first event.
        assert bounded[index][1] == pytest.approx(paced[index - index % BLOCK][1]), index
    differing = [index for index in range(300) if paced[index][0] != bounded[index][0]]
    assert differing == []


# ----------------------------------------------------------------- live pipelines


def test_live_generator_ends_by_itself_and_counts_every_bundle() -> None:
    tag = uuid.uuid4().hex
    pipeline = _streaming_pipeline()
    messages = (
        pipeline
        | make_source("generator://events?count=400&rate=50&speed=20&live=true&seed=3")
        | Count("read")
    )
    _ = messages | beam.ParDo(_RecordBundles(tag))
    assert _uses_live_read(pipeline)
    result = _run_to_end(pipeline)

    seen = _COLLECTED.pop(tag)
    assert sorted(m.origin.offset for _, m in seen) == list(range(400))
    bundles = {bundle for bundle, _ in seen}
    assert len(bundles) > 1, "the live read should emit its events over several bundles"
    # Beam 2.77 alone would keep only the first bundle's counts per step and thread.
    assert counter_totals(result.metrics())["read"] == 400


EVENTS_SCHEMA = load_schema("builtin:events")
LIVE_COUNT = 400
LIVE_RATE = 10.0
QUIET_START = 100  # no late event among the first ones (the lateness gate has no bound yet)


def _late_indices(seed: int) -> tuple[list[int], int]:
    """Returns the indices of parseable late events of a seed, and the malformed count."""
    reader = _source(
        f"generator://events?count={LIVE_COUNT}&rate={LIVE_RATE:g}&seed={seed}&malformed=0.05"
        f"&late=0.05&live=true&speed=1e6&start={START_ISO}"
    )._paced()
    late, broken = [], 0
    for batch, _, _ in _read_all(reader, limit=10_000):
        for element in batch:
            index = element.value.origin.offset
            try:
                parsed = parse_message(element.value, EVENTS_SCHEMA, EventTime(field="ts"))
            except RecordError:
                broken += 1
                continue
            event_time = parsed.event_time
            if event_time < START + index / LIVE_RATE - 30:
                late.append(index)
    return late, broken


def _quiet_seed() -> int:
    """A seed whose late events all come after the first QUIET_START (and are several)."""
    for seed in range(1, 200):
        late, _ = _late_indices(seed)
        if len(late) >= 3 and min(late) >= QUIET_START:
            return seed
    raise AssertionError("no seed has its late events after the first ones")


def test_windows_close_while_the_live_source_runs() -> None:
    seed = _quiet_seed()
    tag = uuid.uuid4().hex
    uri = (
        f"generator://events?count={LIVE_COUNT}&rate={LIVE_RATE:g}&speed=10&live=true"
        f"&seed={seed}&malformed=0.05&late=0.05&start={START_ISO}"
    )
    spec = AggregateSpec.from_dict(
        {
            "event_time": "ts",
            "window": {"type": "tumbling", "size": "10s"},
            "group_by": ["event_type"],
            "aggregates": {"events": "count()"},
        }
    )
    pipeline = _streaming_pipeline()
    messages = (
        pipeline | make_source(uri) | Count("read") | "Produced" >> beam.ParDo(_Produced(tag))
    )
    records, parse_errors = messages | ParseJson(
        "live_test", schema=EVENTS_SCHEMA, event_time=EventTime(field="ts")
    )
    rows, late = records | WindowedAggregate(spec, "live_test")
    _ = rows | Unbatch() | "Progress" >> beam.ParDo(_RowProgress(tag))
    _ = parse_errors | "Parse errors" >> beam.ParDo(_Collect(tag + "parse"))
    _ = late | "Late" >> beam.ParDo(_Collect(tag + "late"))
    result = _run_to_end(pipeline)

    emitted = _COLLECTED.pop(tag + "rows")
    errors = _COLLECTED.pop(tag + "parse", [])
    lates = _COLLECTED.pop(tag + "late", [])
    _PRODUCED.pop(tag)

    on_time = [(row, produced) for row, produced in emitted if row["timing"] == "ON_TIME"]
    assert {row["timing"] for row, _ in emitted} == {"ON_TIME"}
    windows = sorted({row["window_start"] for row, _ in on_time})
    assert len(windows) >= 4
    assert windows[0] == START_ISO
    first = [produced for row, produced in on_time if row["window_start"] == START_ISO]
    assert first and max(first) < LIVE_COUNT, (
        "the first window fired only after the source had produced everything: "
        f"produced counts when its rows came out: {first}"
    )

    late_indices, broken = _late_indices(seed)
    assert len(lates) == len(late_indices)
    assert all(error["reason"] == "late" for error in lates)
    assert len(errors) == broken
    assert all(error["reason"] != "late" for error in errors)
    assert sum(row["events"] for row, _ in on_time) + len(lates) + len(errors) == LIVE_COUNT
    counters = counter_totals(result.metrics())
    assert counters["read"] == LIVE_COUNT
    assert counters.get("late_records", 0) == len(lates)


def test_command_line_live_run_ends_balanced(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "run",
            "events_to_bigquery",
            "--source=generator://events?count=300&rate=50&speed=20&live=true",
            "--schema=builtin:events",
            f"--sink=file://{tmp_path}/out",
            f"--dead_letter=file://{tmp_path}/dlq",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE + 60,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "events_to_bigquery: DONE" in completed.stdout, output
    assert re.search(r"^\s*read\s+300$", completed.stdout, re.MULTILINE), output
    assert "balanced" in completed.stdout and "NOT balanced" not in completed.stdout, output


# --------------------------------------------------------------------------------------------
# Settling readers: told only when everything they handed over has been written


class _SettlingReader:
    """Hands over ``batches`` batches of 10 numbers (event time = the number, in seconds); at
    each `settled` call, records what it had read and what the pipeline had written by then."""

    def __init__(self, tag: str, batches: int) -> None:
        self._tag = tag
        self._batches = batches
        self._read: list[int] = []

    def read(self, limit: int) -> list[Any]:
        if self.done:
            return []
        first = len(self._read)
        batch = list(range(first, first + 10))
        self._read += batch
        time.sleep(0.01)
        return [beam.window.TimestampedValue(n, n) for n in batch]

    @property
    def watermark(self) -> float:
        return float(self._read[-1]) if self._read else 0.0

    @property
    def done(self) -> bool:
        return len(self._read) >= 10 * self._batches

    def settled(self) -> None:
        with _LOCK:
            written = sorted(n for window in _COLLECTED[self._tag] for n in window)
        _collect(f"{self._tag}-settled", (list(self._read), written))


def _make_settling_reader(tag: str, batches: int) -> _SettlingReader:
    return _SettlingReader(tag, batches)


def test_a_settling_reader_is_told_only_what_every_step_has_written(tmp_path: Path) -> None:
    import functools

    tag = f"settle-{uuid.uuid4().hex}"
    options = PipelineOptions(runner=BundleBasedDirectRunner(), streaming=True)
    with beam.Pipeline(options=options) as pipeline:
        _ = (
            pipeline
            | DirectLiveRead(functools.partial(_make_settling_reader, tag, 12))
            | beam.Reshuffle()
            | beam.WindowInto(beam.window.FixedWindows(25))
            | beam.Map(lambda n: (n % 3, n))
            | beam.GroupByKey()  # holds the numbers of a window until it closes
            | beam.MapTuple(lambda unused_key, numbers: sorted(numbers))
            | beam.ParDo(_Collect(tag))
        )
    settled = _COLLECTED[f"{tag}-settled"]
    assert settled, "the reader was never told that the pipeline settled"
    for read, written in settled:
        assert set(read) <= set(written), (len(read), len(written))
    assert settled[-1][0] == list(range(120))  # the end is settled too
