"""The dead-letter writer: every step's dead-letter dicts, written through an ordinary sink.

`DeadLetterWriter` counts the dead letters by reason (``dead_lettered``), makes `Block`s of
`Record`s of them (`transforms.blocks.Batch`) and writes them through a sink built with
`dead_letter_context`: records of `DEAD_LETTER_SCHEMA` (tables and Parquet files get its
columns), counted in their own counter, `WRITTEN_DEAD_LETTERS` (``written`` counts input records
only), and cut with `truncate_payload` when one is too large for the sink's requests. The sink
itself is an ordinary one: it does not know that it writes dead letters.

What that sink could not write cannot be dead-lettered again: the writer fails the bundle
(`DeadLetterWriteError`) on the first such dead letter. The failing step directly follows the
sink's write, and runners fuse a ParDo with its producer (the FnApiRunner, Dataflow, Flink), so
it fails the bundle that wrote: the runner retries that bundle, and nothing is lost or
dead-lettered twice. A sink that fails its bundle by itself (files, stdout) returns no failures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from transforms.blocks import Batch
from transforms.dead_letter import DEAD_LETTER_SCHEMA, CountDeadLetters, truncate_payload
from transforms.io.base import Sink, SinkContext
from transforms.io.registry import make_sink

__all__ = [
    "WRITTEN_DEAD_LETTERS",
    "DeadLetterWriteError",
    "DeadLetterWriter",
    "dead_letter_context",
    "dead_letter_sink",
]

WRITTEN_DEAD_LETTERS = "written_dead_letters"


def dead_letter_context(pipeline: str) -> SinkContext:
    """Returns the context of a dead-letter sink of ``pipeline``."""
    return SinkContext(
        pipeline, DEAD_LETTER_SCHEMA, counter=WRITTEN_DEAD_LETTERS, shrink=truncate_payload
    )


def dead_letter_sink(uri: str, pipeline: str) -> Sink:
    """Returns the sink named by ``uri``, built to write the dead letters of ``pipeline``.

    Raises:
        EndpointError: the URI names no sink, or one that cannot take dead letters.
    """
    return make_sink(uri, dead_letter_context(pipeline))


class DeadLetterWriteError(RuntimeError):
    """A dead letter the dead-letter sink could not write (it cannot be dead-lettered again)."""


class _FailFn(beam.DoFn):
    """Raises on the first dead letter of the dead-letter sink: its bundle fails."""

    def __init__(self, where: str) -> None:
        self._where = where

    def process(self, failure: dict[str, Any]) -> Iterator[None]:
        raise DeadLetterWriteError(
            f"{self._where}: a dead letter was not written ({failure['reason']}): "
            f"{failure['error_message']}"
        )


class DeadLetterWriter(beam.PTransform):
    """Dead-letter dicts -> counted, in blocks, written through ``sink``; nothing returned.

    Args:
        sink: the dead-letter sink, built with `dead_letter_context` (see `dead_letter_sink`).

    Raises:
        DeadLetterWriteError: when the pipeline runs, for a dead letter the sink could not
            write (the bundle fails and is retried).
    """

    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.sink = sink

    def expand(self, dead_letters: beam.PCollection) -> None:
        blocks = dead_letters | "Count" >> CountDeadLetters() | "Batch" >> Batch()
        failures = blocks | "Write" >> self.sink
        if failures is not None:
            _ = failures | "Fail the bundle" >> beam.ParDo(_FailFn(str(self.sink.endpoint)))
