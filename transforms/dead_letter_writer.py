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

`unrouted_errors` finds the error outputs of a finished graph that do not reach the writer (see
`pipelines.framework.spine.Spine`, which refuses such a graph).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor

from transforms import metrics
from transforms.blocks import Batch
from transforms.dead_letter import (
    DEAD_LETTER_SCHEMA,
    CountDeadLetters,
    ToDeadLetter,
    truncate_payload,
)
from transforms.io.base import Sink, SinkContext
from transforms.io.registry import make_sink

__all__ = [
    "WRITTEN_DEAD_LETTERS",
    "DeadLetterWriteError",
    "DeadLetterWriter",
    "UnroutedErrors",
    "dead_letter_context",
    "dead_letter_sink",
    "unrouted_errors",
]

WRITTEN_DEAD_LETTERS = metrics.WRITTEN_DEAD_LETTERS


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


class UnroutedErrors(ValueError):
    """A graph leaves an error output unconsumed: the failures of that step would be lost."""


def unrouted_errors(pipeline: beam.Pipeline) -> list[str]:
    """Returns the full labels of the error outputs that do not reach a `DeadLetterWriter`.

    Error outputs are those of every `Sink` (the dead-letter dicts of what it could not write)
    and of every `ToDeadLetter` (a step's Beam failures); one is routed when a chain of
    consumers leads from it into a `DeadLetterWriter`.
    """
    graph = _Graph()
    pipeline.visit(graph)
    return [
        node.full_label
        for node in graph.error_nodes
        if not all(graph.reaches_writer(pcoll) for pcoll in _pcolls(node.outputs.values()))
    ]


def _pcolls(values: Iterable[Any]) -> list[beam.PCollection]:
    return [value for value in values if isinstance(value, beam.PCollection)]


class _Graph(PipelineVisitor):
    """The consumers of every PCollection of a pipeline, and its error-producing steps."""

    def __init__(self) -> None:
        self.consumers: dict[beam.PCollection, list[AppliedPTransform]] = {}
        self.error_nodes: list[AppliedPTransform] = []

    def enter_composite_transform(self, node: AppliedPTransform) -> None:
        if isinstance(node.transform, (Sink, ToDeadLetter)):
            self.error_nodes.append(node)

    def visit_transform(self, node: AppliedPTransform) -> None:
        for pcoll in _pcolls(node.inputs):
            self.consumers.setdefault(pcoll, []).append(node)

    def reaches_writer(self, pcoll: beam.PCollection) -> bool:
        """Whether a chain of consumers leads from ``pcoll`` into a `DeadLetterWriter`."""
        seen, pending = {pcoll}, [pcoll]
        while pending:
            for node in self.consumers.get(pending.pop(), ()):
                if _inside_writer(node):
                    return True
                for output in _pcolls(node.outputs.values()):
                    if output not in seen:
                        seen.add(output)
                        pending.append(output)
        return False


def _inside_writer(node: AppliedPTransform | None) -> bool:
    while node is not None:
        if isinstance(node.transform, DeadLetterWriter):
            return True
        node = node.parent
    return False
