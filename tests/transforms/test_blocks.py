"""Blocks travel as one element: one pickle each, and a size estimate without encoding."""

from __future__ import annotations

import apache_beam as beam
from apache_beam import coders
from apache_beam.testing.util import assert_that, equal_to

from transforms.blocks import ESTIMATED_BYTES_PER_ELEMENT, Batch, Block, BlockCoder, Unbatch
from transforms.message import Message, Origin, Record


def test_a_block_round_trips_through_its_coder() -> None:
    record = Record({"k": "a", "v": 1}, Message(b'{"k":"a","v":1}', {}, Origin("file", line=3)))
    block = Block([(record, 12.5), (record, None)])
    coder = coders.registry.get_coder(Block)
    assert isinstance(coder, BlockCoder)
    decoded = coder.decode(coder.encode(block))
    assert decoded == block and isinstance(decoded, Block)


def test_the_size_of_a_block_is_estimated_from_its_length() -> None:
    unpicklable = Block([lambda: None] * 3)  # encoding it would fail
    assert BlockCoder().get_impl().estimate_size(unpicklable) == 3 * ESTIMATED_BYTES_PER_ELEMENT


def test_blocks_pass_between_steps_as_blocks() -> None:
    with beam.Pipeline() as pipeline:
        sizes = (
            pipeline
            | beam.Create([Block([1, 2]), Block([3])]).with_output_types(Block)
            | beam.Map(lambda block: (type(block).__name__, len(block)))
        )
        assert_that(sizes, equal_to([("Block", 2), ("Block", 1)]))


def _times(element: Record, timestamp: object = beam.DoFn.TimestampParam) -> tuple:
    return element.data["n"], float(timestamp)  # type: ignore[arg-type]


def test_batch_keeps_every_element_and_unbatch_restores_event_times() -> None:
    records = [Record({"n": n}, None, 1000.0 + n) for n in range(2500)]
    with beam.Pipeline("FnApiRunner") as pipeline:
        blocks = pipeline | beam.Create(records, reshuffle=False) | Batch()
        sizes = blocks | "Sizes" >> beam.Map(lambda block: (type(block).__name__, len(block) > 0))
        assert_that(sizes | beam.Distinct(), equal_to([("Block", True)]), label="blocks")
        restored = blocks | Unbatch() | beam.Map(_times)
        assert_that(restored, equal_to([(n, 1000.0 + n) for n in range(2500)]), label="records")


def test_batch_keeps_each_window_apart() -> None:
    with beam.Pipeline() as pipeline:
        blocks = (
            pipeline
            | beam.Create([(n, float(n)) for n in range(10)])
            | beam.MapTuple(lambda n, t: beam.window.TimestampedValue(n, t))
            | beam.WindowInto(beam.window.FixedWindows(5))
            | Batch()
            | beam.Map(
                lambda block, window=beam.DoFn.WindowParam: (float(window.start), sorted(block))
            )
            | beam.CombinePerKey(lambda lists: sorted(n for block in lists for n in block))
        )
        assert_that(blocks, equal_to([(0.0, [0, 1, 2, 3, 4]), (5.0, [5, 6, 7, 8, 9])]))
