"""Tests of pipelines.framework.spine.Spine: every error output reaches the dead-letter writer."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pytest

from pipelines.framework.spine import ParseSettings, Spine, SpineConfig
from transforms.blocks import Batch, Unbatch
from transforms.dead_letter import ToDeadLetter
from transforms.dead_letter_writer import UnroutedErrors, dead_letter_sink, unrouted_errors
from transforms.io.base import SinkContext
from transforms.io.registry import make_sink, make_source
from transforms.message import Record
from transforms.metrics import counter_totals
from transforms.parse import DEFAULT_MAX_BYTES, ParseJson

REDIS = "redis://127.0.0.1:6390/0?key=spine:{id}"  # built, never written: the graph is refused


def _config(tmp_path: Path, lines: list[bytes]) -> SpineConfig:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    return SpineConfig(
        pipeline="spine_test",
        source=make_source(f"file://{source}"),
        sink=make_sink(f"file://{tmp_path}/out", SinkContext("spine_test")),
        dead_letter=dead_letter_sink(f"file://{tmp_path}/dlq", "spine_test"),
        parse=ParseSettings(None, None, DEFAULT_MAX_BYTES, "keep"),
        max_seconds=0,
    )


def test_a_sink_applied_beside_the_spine_is_refused_naming_its_step(tmp_path: Path) -> None:
    config = _config(tmp_path, [b'{"id": 1}'])
    pipeline = beam.Pipeline()
    with pytest.raises(UnroutedErrors, match="'Write side'.*Spine.write") as raised:
        with Spine(pipeline, config) as spine:
            blocks = spine.read()
            spine.write("Write", config.sink, blocks)
            _ = blocks | "Write side" >> make_sink(REDIS, SinkContext("spine_test"))
    assert "spine_test" in str(raised.value)


def test_a_step_whose_failures_are_dropped_is_refused_naming_it(tmp_path: Path) -> None:
    config = _config(tmp_path, [b'{"id": 1}'])
    pipeline = beam.Pipeline()
    with pytest.raises(UnroutedErrors, match="'Parse again/"):
        with Spine(pipeline, config) as spine:
            messages = pipeline | "Read again" >> config.source
            records, _ = messages | "Parse again" >> ParseJson("spine_test")
            spine.write("Write", config.sink, records)


def _check(record: Record) -> Record:
    if record.data["id"] == 2:
        raise ValueError("two is refused")
    return record


class _RefuseTwo(beam.PTransform):
    """Records -> (records, dead letters of those with id 2), as every fallible step returns."""

    def expand(self, records: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        good, bad = records | beam.Map(_check).with_exception_handling()
        return good, bad | ToDeadLetter("spine_test", "check")


def test_every_error_output_of_a_spine_reaches_the_dead_letters(tmp_path: Path) -> None:
    config = _config(tmp_path, [b'{"id": 1}', b"not json", b'{"id": 2}'])
    pipeline = beam.Pipeline()
    with Spine(pipeline, config) as spine:
        records = spine.read() | "Records" >> Unbatch()
        checked = spine.apply("Check", _RefuseTwo(), records)
        spine.write("Write", config.sink, checked | "Blocks" >> Batch())
    assert unrouted_errors(pipeline) == []
    result = pipeline.run()
    result.wait_until_finish()
    counters = counter_totals(result.metrics())
    assert counters["read"] == 3
    assert counters["written"] == 1
    assert counters["dead_lettered"] == counters["written_dead_letters"] == 2
    dead = [json.loads(line) for f in (tmp_path / "dlq").glob("part*") for line in f.open()]
    assert sorted((d["step"], d["payload_string"]) for d in dead) == [
        ("check", '{"id": 2}'),
        ("parse", "not json"),
    ]
