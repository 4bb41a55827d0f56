"""What every source and sink is: a PTransform built from an endpoint URI.

A `Source` turns a pipeline's beginning into `Block`s of `Message`s; a `Sink` takes `Block`s of
`Record`s and returns the records it could not write as dead-letter dicts, one per record (or
``None`` when it has no such output and fails the bundle instead). A sink does not know whether
it writes dead letters: `transforms.dead_letter_writer` wraps an ordinary sink for that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import apache_beam as beam

from transforms.blocks import BLOCK_SIZE
from transforms.io.endpoint import Endpoint
from transforms.io.runners import DIRECT, runner_name, runners_for
from transforms.message import Record
from transforms.metrics import WRITTEN
from transforms.parse import DEFAULT_MAX_BYTES
from transforms.schema import Schema

__all__ = ["BLOCK_SIZE", "Sink", "SinkContext", "Source", "message_payload"]


class _OnRunners:
    """Where a source or sink runs: its row of the runner matrix (`transforms.io.runners`)."""

    role: ClassVar[str]  # "source" or "sink"
    runner_kind: str = ""  # the URI parameter that makes its kind there (live=true, impl=java)
    endpoint: Endpoint

    @property
    def runners(self) -> frozenset[str]:
        """The runners it works on; the command line refuses it on the others."""
        return runners_for(self.role, self.endpoint.scheme, self.runner_kind)


class Source(_OnRunners, beam.PTransform):
    """A source of `Message`s named by an endpoint URI.

    Its ``expand`` returns `transforms.blocks.Block`s of `Message`s, so that every step after
    it pays Beam's per-element cost once per block: a source that reads many messages at once
    (a file, the bounded generator) makes the blocks itself, with at most `BLOCK_SIZE` messages
    each; a stream's read, one element per message, ends with `transforms.blocks.Batch`.

    Attributes:
        bounded: whether its output is a bounded PCollection (a file, a generator with a count):
            a pipeline with an unbounded source runs in streaming mode.
        finite: whether the source ends by itself (every bounded source, and a paced
            generator with a count): the run waits for it instead of running until stopped.
        live_on_direct: the source streams live on the DirectRunner's streaming engine
            (``BundleBasedDirectRunner``), which the command line then selects.
        runner_kind: the URI parameter that makes the source's kind in the runner matrix
            (``live=true``, ``impl=java``; ``""`` for its scheme's default kind).
        max_payload_bytes: the payload size limit of the pipeline (``--max_payload_bytes``),
            set by `transforms.io.registry.make_source`: a source that reads a payload over it
            piece by piece (the file source) keeps only a prefix (see `Message.oversize`).
        delivery: what the source guarantees on each runner when a run dies, e.g.
            ``{"DirectRunner": "at least once: ..."}`` (``describe`` prints it); empty when it
            has nothing to say.
    """

    bounded: bool = True
    finite: bool = True
    role: ClassVar[str] = "source"
    live_on_direct: bool = False
    max_payload_bytes: int = DEFAULT_MAX_BYTES
    delivery: ClassVar[dict[str, str]] = {}

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__()
        self.endpoint = endpoint

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint) -> Source:
        """Builds the source from its URI; raises `EndpointError` for a bad one."""
        return cls(endpoint)

    def check_readable(self, runner: Any) -> None:
        """Asks, if the read runs in this process (the DirectRunner), whether it can read.

        There `check` makes one bounded call, so that a missing topic, stream or subscription
        fails where the graph is built, before anything runs; on other runners the workers
        read, maybe from servers or with credentials this machine does not have, and nothing
        is asked.

        Raises:
            EndpointError: what `check` raises.
        """
        if runner_name(runner) == DIRECT:
            self.check()

    def check(self) -> None:
        """Raises `EndpointError` when the source cannot read (nothing to ask by default)."""

    def default_label(self) -> str:
        return f"Read {self.endpoint.scheme}"

    def after_write(self) -> None:
        """Adds the steps that must follow every write of the pipeline; by default none.

        Called once the graph is complete (by `pipelines.framework.spine.Spine`, after the
        dead-letter writer). A Kafka read commits its offsets here, after the sinks finished.
        """


@dataclass(frozen=True)
class SinkContext:
    """What a sink needs to know about the pipeline writing to it.

    Attributes:
        pipeline: the pipeline's name (for dead-letter records).
        schema: the schema of the records written, when declared (tables are created from it).
        event_time_field: the record field holding the event time, when there is one (tables
            are partitioned by day on it unless the URI says otherwise).
        counter: the counter of what the sink writes: ``written`` for a pipeline's main sink,
            another name for a side output (``written_counts``...) or for the dead letters, so
            that the balance ``read = written + dead_lettered + dropped`` counts each input
            record once.
        shrink: how a record's data too large for a sink's requests is made smaller (the
            dead-letter writer cuts the payload, `transforms.dead_letter.truncate_payload`);
            ``None``: such a record is dead-lettered.
        raw: write each record's original message instead of its data: the payload bytes
            and attributes of ``record.origin``, unchanged (a replay of dead letters). Sinks
            of messages (Pub/Sub, Kafka, Kinesis, files as lines) take it; ``record.data``
            still gives the fields a URI names (a key, an ordering key).
    """

    pipeline: str
    schema: Schema | None = None
    event_time_field: str | None = None
    counter: str = WRITTEN
    shrink: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    raw: bool = False


class Sink(_OnRunners, beam.PTransform):
    """A sink of `Record`s named by an endpoint URI.

    ``expand`` takes `Block`s of `Record`s and returns the dead-letter dicts (step ``sink``)
    of the records it could not write, one element each, in the window of the record's block;
    or ``None`` for a sink that fails the bundle when a write fails (files, stdout, console).
    """

    role: ClassVar[str] = "sink"

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.context = context

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, context: SinkContext) -> Sink:
        """Builds the sink from its URI; raises `EndpointError` for a bad one."""
        return cls(endpoint, context)

    def default_label(self) -> str:
        return f"Write {self.endpoint.scheme}"


def message_payload(record: Record, raw: bool, encode: Callable[[Any], bytes]) -> bytes:
    """Returns the bytes a sink of messages sends for ``record``.

    Args:
        record: the record written.
        raw: the sink's `SinkContext.raw`.
        encode: how the sink encodes ``record.data`` (JSON, bytes as base64).

    Returns:
        With ``raw``, the original payload of ``record.origin``; else ``encode(record.data)``.
    """
    if raw and record.origin is not None:
        return record.origin.payload
    return encode(record.data)
