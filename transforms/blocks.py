"""Block: a list of elements that a bounded fast path handles as one Beam element.

Beam's Python SDK pays its per-element cost (about 10 us a step on the local runners) once per
block instead of once per record. Blocks are plain lists of a distinct type so that Beam uses
`BlockCoder` for them: one pickle per block, and a size estimate that does not encode it. Beam
samples the size of elements in every PCollection; its default coder would encode each of a
block's thousand records (a pickle each: Beam has no coder of its own for records) to estimate
it.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import coders
from apache_beam.coders import coder_impl
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils import windowed_value
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

__all__ = [
    "BLOCK_SIZE",
    "ESTIMATED_BYTES_PER_ELEMENT",
    "Batch",
    "Block",
    "BlockCoder",
    "FoldPerBundle",
    "Unbatch",
]

# Elements per block: a block is sent on when it holds this many, or at the end of its bundle.
BLOCK_SIZE = 1000
# The size estimate of a block's element (a record of about 200 bytes of JSON and its message).
ESTIMATED_BYTES_PER_ELEMENT = 512


class Block(list):  # type: ignore[type-arg]
    """A list of elements (`Message`s, `Record`s, ``(Record, event_time)`` pairs...)."""


class BlockCoder(coders.Coder):
    """Encodes a `Block` with one pickle; estimates its size from its length."""

    def _create_impl(self) -> coder_impl.CoderImpl:
        return coder_impl.CallbackCoderImpl(
            lambda block: pickle.dumps(list(block), pickle.HIGHEST_PROTOCOL),
            lambda data: Block(pickle.loads(data)),
            lambda block: ESTIMATED_BYTES_PER_ELEMENT * len(block),
        )

    def encode(self, value: Block) -> bytes:
        return self.get_impl().encode(value)

    def decode(self, encoded: bytes) -> Block:
        return self.get_impl().decode(encoded)

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> Any:
        return Block


coders.registry.register_coder(Block, BlockCoder)


class FoldPerBundle(beam.DoFn):
    """Base of the steps that fold what a bundle holds into one partial result per key.

    A subclass folds into ``self.partials`` (a dict, empty at the start of each bundle) and
    ``yield from self.flush_if_full()`` after each element or block: the partials go downstream
    as ``(key, emitted(partial))`` whenever `limit` keys are held and at the end of the bundle
    (in the global window), so memory is bounded by the keys, not the elements. A subclass
    that gives its outputs their own timestamps overrides `timestamped`; one that sends the
    partials on in another shape (several keys in one element) overrides `flushed`.
    """

    def limit(self) -> int:
        """How many keys are held before the partials are sent on."""
        raise NotImplementedError

    def emitted(self, partial: Any) -> Any:
        """What is sent on for a partial (by default the partial itself)."""
        return partial

    def timestamped(self, key: Any, partial: Any) -> Iterator[tuple[Any, Timestamp | None]]:
        """The elements sent on for a key's partial, each with its timestamp.

        By default ``(key, emitted(partial))`` without one (``None``): a flush inside
        ``process`` keeps the input's timestamp, the end of the bundle the earliest one.
        """
        yield (key, self.emitted(partial)), None

    def flushed(self, partials: dict[Any, Any]) -> Iterator[tuple[Any, Timestamp | None]]:
        """The elements sent on for the partials held, each with its timestamp.

        By default `timestamped` of each key's partial.
        """
        for key, partial in partials.items():
            yield from self.timestamped(key, partial)

    def start_bundle(self) -> None:
        self.partials: dict[Any, Any] = {}

    def flush_if_full(self) -> Iterator[Any]:
        """The partials to send on now: all of them when `limit` keys are held, else none."""
        if len(self.partials) < self.limit():
            return
        for element, timestamp in self._flush():
            yield element if timestamp is None else TimestampedValue(element, timestamp)

    def finish_bundle(self) -> Iterator[Any]:
        for element, timestamp in self._flush():
            yield WindowedValue(element, timestamp or MIN_TIMESTAMP, (GlobalWindow(),))

    def _flush(self) -> Iterator[tuple[Any, Timestamp | None]]:
        partials, self.partials = self.partials, {}
        return self.flushed(partials)


@beam.typehints.with_output_types(Block)
class _BatchFn(beam.DoFn):
    """Collects a bundle's elements into blocks, one block per window.

    A block is sent on when it holds `BLOCK_SIZE` elements and at the end of the bundle, in its
    window and at the oldest timestamp of its elements (so nothing in it is later than it was).

    It reads each element's windowed value whole (``WindowedValueParam``) instead of asking for
    its window and timestamp: Beam then calls `process` once per element, not once per window
    with the arguments rebuilt, which is most of what a stream's message costs here. Elements
    are grouped by their windows (an element in several windows goes into one block of them);
    an element in the same windows as the one before it (the usual case: one window for all)
    goes to the same block without a lookup.
    """

    def start_bundle(self) -> None:
        # windows -> [elements, oldest timestamp (micros), windows]
        self._open: dict[tuple[Any, ...], list[Any]] = {}
        self._windows: Any = None  # the windows of the last element, and their entry
        self._held: list[Any] = []

    def process(
        self, element: Any, windowed: Any = beam.DoFn.WindowedValueParam
    ) -> Iterator[WindowedValue]:
        windows = windowed.windows
        micros = windowed.timestamp_micros
        if windows == self._windows:
            held = self._held
            if micros < held[1]:
                held[1] = micros
        else:
            key = tuple(windows)
            found = self._open.get(key)
            if found is None:
                self._open[key] = held = [Block(), micros, key]
            else:
                held = found
                if micros < held[1]:
                    held[1] = micros
            self._windows, self._held = windows, held
        block = held[0]
        block.append(element)
        if len(block) >= BLOCK_SIZE:
            del self._open[held[2]]
            self._windows = None
            yield windowed_value.create(block, held[1], held[2])

    def finish_bundle(self) -> Iterator[WindowedValue]:
        held, self._open = self._open, {}
        self._windows, self._held = None, []
        for block, oldest, windows in held.values():
            yield windowed_value.create(block, oldest, windows)


class Batch(beam.PTransform):
    """Elements -> `Block`s of them: what one bundle of a stream holds, per window.

    A stream delivers one element per message; the steps of the suite take blocks, so that
    Beam's per-element cost is paid once per block. Each block keeps its elements' window and
    the oldest of their timestamps; a record's own event time travels in `Record.event_time`.
    """

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | "Batch" >> beam.ParDo(_BatchFn())


class _UnbatchFn(beam.DoFn):
    def process(self, block: list[Any]) -> Iterator[Any]:
        for element in block:
            event_time = getattr(element, "event_time", None)
            yield element if event_time is None else TimestampedValue(element, event_time)


class Unbatch(beam.PTransform):
    """`Block`s -> their elements; a `Record` with an event time is timestamped with it."""

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        return blocks | "Unbatch" >> beam.ParDo(_UnbatchFn())
