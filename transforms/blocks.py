"""Block: a list of elements that a bounded fast path handles as one Beam element.

Beam's Python SDK pays its per-element cost (about 10 us a step on the local runners) once per
block instead of once per record. Blocks are plain lists of a distinct type so that Beam uses
`BlockCoder` for them: one pickle per block, and a size estimate that does not encode it. Beam
samples the size of elements in every PCollection; its default coder would encode each of a
block's thousand records (a pickle each, since records are named tuples) to estimate it.
"""

from __future__ import annotations

import pickle
from typing import Any

from apache_beam import coders
from apache_beam.coders import coder_impl

__all__ = ["ESTIMATED_BYTES_PER_ELEMENT", "Block", "BlockCoder"]

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
