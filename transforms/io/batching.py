"""What every batching sink shares: buffered records, batches, dead-letter output.

A sink DoFn takes `Block`s of `Record`s and buffers each record as a `Pending` (the record, what
the sink will send for it, and the window and timestamp of its block), writes the buffer in
batches (each sent with the sink's `transforms.io.retry.RetryPolicy`), and emits the records it
could not write with `dead_letter`, one dead-letter dict each.

Windows and times: a block holds the records of one window (`transforms.blocks.Batch` collects
per window), so each dead letter goes out in its record's window, and downstream windowed steps
(a file dead-letter sink names its files by window) see it where it belongs. Its element
timestamp is the block's, the oldest of the block's records (so it is never later than its
record was), while the record's own event time, `Record.event_time`, is what the dead letter
states as ``event_timestamp``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import apache_beam as beam
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from transforms.dead_letter import error_record
from transforms.io.retry import SINK_UNAVAILABLE
from transforms.message import Record

__all__ = [
    "BatchingFn",
    "SINK_UNAVAILABLE",
    "Pending",
    "dead_letter",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Pending(Generic[T]):
    """A buffered input element of a sink.

    Attributes:
        record: the record as it came in (its origin message is what gets dead-lettered).
        item: what the sink sends for the record, e.g. a BigQuery JSON row or a Redis command.
        timestamp: the timestamp of the record's block.
        window: the window of the record's block.

    """

    record: Record
    item: T
    timestamp: Timestamp
    window: BoundedWindow


def dead_letter(
    pending: Pending[Any],
    *,
    pipeline: str,
    reason: str,
    error_type: str,
    message: str,
    stacktrace: str = "",
) -> WindowedValue:
    """Returns the dead-letter dict of a record a sink could not write, in its window.

    Args:
        pending: the buffered record.
        pipeline: the pipeline's name.
        reason: the reason code, e.g. ``sink_rejected`` or `SINK_UNAVAILABLE`.
        error_type: the error's class name.
        message: what went wrong, for a person; it must hold no credentials.
        stacktrace: the formatted traceback, if any.

    Returns:
        A `WindowedValue` of the dead-letter dict (see `transforms.dead_letter`, step ``sink``,
        ``event_timestamp`` the record's event time) in the window and at the timestamp of the
        record's block, for a DoFn to yield.

    """
    record = error_record(
        pending.record,
        pipeline=pipeline,
        step="sink",
        reason=reason,
        error_type=error_type,
        error_message=message,
        stacktrace=stacktrace,
        event_timestamp=pending.record.event_time,
    )
    return WindowedValue(record, pending.timestamp, (pending.window,))


class BatchingFn(beam.DoFn, Generic[T]):
    """A DoFn that buffers the `Pending` items of a bundle and sends them in batches.

    A subclass's ``process`` hands an item per record to `add`; `send` sends one batch and yields
    its outputs. A batch is sent when it holds ``batch_size`` items, when the next item would take
    it past ``max_batch_bytes`` (sizes from `item_bytes`; no limit by default), and at the end of
    the bundle.
    """

    max_batch_bytes: int | None = None

    @property
    def batch_size(self) -> int:
        """The most items in one batch."""
        raise NotImplementedError

    def item_bytes(self, pending: Pending[T]) -> int:
        """The size an item adds to its batch, for ``max_batch_bytes``."""
        return 0

    def send(self, batch: list[Pending[T]]) -> Iterator[Any]:
        """Sends one non-empty batch; yields its outputs (dead letters, results)."""
        raise NotImplementedError

    def start_bundle(self) -> None:
        self._buffer: list[Pending[T]] = []
        self._bytes = 0

    def add(self, pending: Pending[T]) -> Iterator[Any]:
        """Buffers one item, sending the batch first or after when it is full."""
        size = self.item_bytes(pending) if self.max_batch_bytes is not None else 0
        if self._buffer and self.max_batch_bytes is not None:
            if self._bytes + size > self.max_batch_bytes:
                yield from self.flush()
        self._buffer.append(pending)
        self._bytes += size
        if len(self._buffer) >= self.batch_size:
            yield from self.flush()

    def flush(self) -> Iterator[Any]:
        """Sends what is buffered, if anything."""
        batch, self._buffer, self._bytes = self._buffer, [], 0
        if batch:
            yield from self.send(batch)

    def finish_bundle(self) -> Iterator[Any]:
        yield from self.flush()
