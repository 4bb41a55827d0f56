"""Block: a list of elements that a bounded fast path handles as one Beam element.

Beam's Python SDK pays its per-element cost (about 10 us a step on the local runners) once per
block instead of once per record. Blocks are plain lists of a distinct type so that Beam uses
`BlockCoder` for them: one pickle per block, and a size estimate that does not encode it. Beam
samples the size of elements in every PCollection; its default coder would encode each of a
block's thousand records (a pickle each, since records are named tuples) to estimate it.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import coders
from apache_beam.coders import coder_impl
from apache_beam.transforms.window import GlobalWindows

__all__ = ["ESTIMATED_BYTES_PER_ELEMENT", "Block", "BlockCoder", "FoldPerBundle"]

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
    (in the global window), so memory is bounded by the keys, not the elements.
    """

    def limit(self) -> int:
        """How many keys are held before the partials are sent on."""
        raise NotImplementedError

    def emitted(self, partial: Any) -> Any:
        """What is sent on for a partial (by default the partial itself)."""
        return partial

    def start_bundle(self) -> None:
        self.partials: dict[Any, Any] = {}

    def flush_if_full(self) -> Iterator[tuple[Any, Any]]:
        """The partials to send on now: all of them when `limit` keys are held, else none."""
        if len(self.partials) >= self.limit():
            return self._flush()
        return iter(())

    def finish_bundle(self) -> Iterator[Any]:
        for partial in self._flush():
            yield GlobalWindows.windowed_value(partial)

    def _flush(self) -> Iterator[tuple[Any, Any]]:
        partials, self.partials = self.partials, {}
        for key, partial in partials.items():
            yield key, self.emitted(partial)
