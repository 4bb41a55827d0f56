"""``file://`` endpoints: JSON Lines in, JSON Lines or Parquet out.

Source: ``file:///data/in/*.jsonl`` reads every matching file (bounded), one `Message` per line
in `Block`s of `BLOCK_SIZE` lines, with the file path and line number as its origin. Lines are
kept as the original bytes. Files ending in ``.gz``, ``.bz2``, ``.zst``, ``.deflate``, ``.xz`` or
``.lzma`` are decompressed (`transforms.io.decompress`). Files are read in chunks: a line longer
than the source's ``max_payload_bytes`` is never held whole, it comes out as its first 64 KiB
with its size and SHA-256 (`Message.oversize`), and Parse dead-letters it as ``too_large``.

Sink: ``file:///data/out?format=jsonl|parquet&prefix=part&metadata=true`` writes blocks of records
(bytes as base64 in JSON Lines) into files in that folder, with ``metadata=true`` each followed by
its source's metadata (``_meta_*`` fields, `transforms.io.metadata`; attributes as an object in
JSON Lines, JSON text in Parquet); a sink of original messages (`SinkContext.raw`)
writes each record's original payload as a line instead. Unbounded input is written bundle by
bundle, whatever the records' event times (a record behind the watermark is still written, never
dropped as late): each bundle's records go to a file of their own, ``PREFIX-UTCTIME-TAG.SUFFIX``,
written under a hidden temporary name, flushed to disk (``fsync``) and renamed into place before
the bundle ends, so a source position committed after the bundle never covers records that a kill
could still lose, and no reader ever sees half a file. A write that fails with an error that may go
away (disk full, I/O error, stale network mount) is tried again as a sink outage
(`transforms.io.retry`, ``attempts=forever`` by default; with ``attempts=N`` the bundle fails: a
file sink has nothing to dead-letter to).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.transforms.window import GlobalWindow

from transforms.blocks import Block
from transforms.io.base import BLOCK_SIZE, Sink, SinkContext, Source, message_payload
from transforms.io.decompress import decompressed
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.lines import read_lines
from transforms.io.metadata import keeps_metadata, row_with_metadata, with_metadata
from transforms.io.parquet import ParquetFileSink
from transforms.io.retry import RetryPolicy
from transforms.message import Message, Origin, Record
from transforms.metrics import BYTES_READ, LOCAL, Count

__all__ = ["FileSink", "FileSource"]

_FORMATS = {"jsonl": ".jsonl", "parquet": ".parquet"}


def _messages(raw: Any, path: str, max_bytes: int) -> Iterator[Message]:
    lines = read_lines(decompressed(raw, path), max_bytes)
    for number, (payload, oversize) in enumerate(lines, start=1):
        yield Message(payload, {}, Origin("file", path=path, line=number), oversize)


def _position(raw: Any) -> int:
    """How far into the (compressed) file the read is, for `LOCAL`'s ``bytes_read``."""
    try:
        return int(raw.tell())
    except (AttributeError, OSError, ValueError):  # a stream that cannot tell: counted at the end
        return 0


@beam.typehints.with_output_types(Block)
class _ReadBlocks(beam.DoFn):
    """A file -> `Block`s of the `Message`s of its lines, `BLOCK_SIZE` lines each."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes

    def process(self, readable: fileio.ReadableFile) -> Iterator[Block]:
        path = readable.metadata.path
        counted = 0
        with readable.open(compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            messages = _messages(raw, path, self._max_bytes)
            while block := Block(itertools.islice(messages, BLOCK_SIZE)):
                position = max(counted, _position(raw))
                LOCAL.add(BYTES_READ, position - counted)
                counted = position
                yield block
        LOCAL.add(BYTES_READ, max(0, readable.metadata.size_in_bytes - counted))


class FileSource(Source):
    """Reads JSON Lines files (plain or compressed) matching a path or glob, in blocks.

    Output: `Block`s of `Message`s, a `Message` a line, `BLOCK_SIZE` lines a block.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        endpoint.check_params(frozenset())
        if endpoint.host not in ("", "localhost"):
            raise EndpointError(f"{endpoint}: use file:///absolute/path (three slashes)")
        if not glob.glob(endpoint.path):
            raise EndpointError(f"{endpoint}: no file matches {endpoint.path!r}")
        self.pattern = endpoint.path

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self.pattern)
            | "Open" >> fileio.ReadMatches()
            | "Lines" >> beam.ParDo(_ReadBlocks(self.max_payload_bytes))
        )


def _encode_fallback(value: Any) -> Any:
    return str(value)


class JsonLinesFileSink(fileio.FileSink):
    """Writes record dicts as JSON Lines; bytes become base64."""

    def open(self, fh: Any) -> None:
        self._fh = fh
        self._encoder = msgspec.json.Encoder(enc_hook=_encode_fallback)

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(self._encoder.encode(record) + b"\n")

    def flush(self) -> None:
        self._fh.flush()


class PayloadLinesFileSink(JsonLinesFileSink):
    """Writes original payloads (bytes) as lines, unchanged (`SinkContext.raw`).

    What a file source reads back as the same messages (files keep no attributes).
    """

    def write(self, record: Any) -> None:
        self._fh.write(record + b"\n")


def _data(record: Record) -> Any:
    return record.data


def _with_metadata(record: Record) -> Any:
    return row_with_metadata(record, attributes_as_text=False)


def _payload(record: Record) -> Any:
    return message_payload(record, True, msgspec.json.encode)


def _file_naming(prefix: str, suffix: str) -> Callable[..., str]:
    """Names the files of a bounded write ``prefix[-WINDOW]-SSSSS-of-NNNNN.suffix``."""

    def name(window: Any, pane: Any, shard: int, shards: int, *unused: Any) -> str:
        parts = [prefix]
        if window != GlobalWindow():
            parts += [window.start.to_utc_datetime().isoformat(), window.end.to_utc_datetime()
                      .isoformat()]  # fmt: skip
        parts.append(f"{shard or 0:05d}-of-{shards or 1:05d}")
        return "-".join(parts) + suffix

    return name


# Write errors that may go away by themselves: retried as a sink outage.
_TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE}
)


def _transient_write(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS


class _WriteBundleFiles(beam.DoFn):
    """Writes each bundle's blocks of records durably to a file of their own.

    The file is written under a hidden temporary name, flushed to disk, renamed into place and
    the folder flushed, all in ``finish_bundle``: when the bundle is done, its records are on
    disk. Failed writes are tried again per ``retry``.
    """

    def __init__(
        self,
        folder: str,
        prefix: str,
        suffix: str,
        sink: fileio.FileSink,
        retry: RetryPolicy,
        row: Callable[[Record], Any] = _data,
    ) -> None:
        self._folder = folder
        self._prefix = prefix
        self._suffix = suffix
        self._sink = sink
        self._row = row
        self._retry = retry

    def start_bundle(self) -> None:
        self._rows: list[Any] = []

    def process(self, block: list[Record]) -> None:
        self._rows.extend(self._row(record) for record in block)

    def _write(self, name: str) -> None:
        temporary = os.path.join(self._folder, f".{name}.tmp")
        try:
            with open(temporary, "wb") as handle:
                self._sink.open(handle)
                for row in self._rows:
                    self._sink.write(row)
                self._sink.flush()
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, os.path.join(self._folder, name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise
        folder = os.open(self._folder, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def finish_bundle(self) -> None:
        if not self._rows:
            return
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{self._prefix}-{stamp}-{uuid.uuid4().hex}{self._suffix}"
        self._retry.call(lambda: self._write(name), _transient_write, self._folder)
        self._rows = []


class FileSink(Sink):
    """Writes records to files in a folder; failures fail the bundle (nothing to dead-letter)."""

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__(endpoint, context)
        endpoint.check_params(frozenset({"format", "prefix", "attempts", "metadata"}))
        self.format = endpoint.params.get("format", "jsonl")
        if self.format not in _FORMATS:
            raise EndpointError(f"{endpoint}: format must be one of {sorted(_FORMATS)}")
        self.folder = endpoint.path
        if not self.folder:
            raise EndpointError(f"{endpoint}: use file:///absolute/folder")
        self.prefix = endpoint.params.get("prefix", "part")
        self.retry = RetryPolicy.from_endpoint(endpoint)
        if self.format == "parquet" and context.raw:
            raise EndpointError(
                f"{endpoint}: original messages are written as lines: use format=jsonl"
            )
        self._row = _payload if context.raw else _data
        self.schema = context.schema
        if keeps_metadata(endpoint):
            if context.raw:
                raise EndpointError(
                    f"{endpoint}: original messages are written as they came: drop metadata=true"
                )
            self._row = _with_metadata
            self.schema = with_metadata(context.schema, endpoint)
        if self.format == "parquet" and context.schema is None:
            raise EndpointError(
                f"{endpoint}: format=parquet needs the records' schema to give every file the "
                "same columns: pass --schema (a BigQuery or JSON Schema file), or write "
                "format=jsonl"
            )

    def _file_sink(self, destination: Any) -> fileio.FileSink:
        return _BlockSink(self._records())

    def expand(self, blocks: beam.PCollection) -> None:
        """Writes blocks (lists) of `Record`s; returns None (a failed write fails the bundle)."""
        os.makedirs(self.folder, exist_ok=True)
        suffix = _FORMATS[self.format]
        if not blocks.is_bounded:
            files = _WriteBundleFiles(
                self.folder, self.prefix, suffix, self._records(), self.retry, self._row
            )
            _ = blocks | "Files" >> beam.ParDo(files)
        else:
            _ = (
                blocks
                | "Data" >> beam.Map(_block_data, self._row).with_output_types(Block)
                | "Files"
                >> fileio.WriteToFiles(
                    self.folder,
                    file_naming=_file_naming(self.prefix, suffix),
                    sink=self._file_sink,
                )
            )
        _ = blocks | "Count" >> Count(self.context.counter)
        return None

    def _records(self) -> fileio.FileSink:
        """The writer of single record dicts in the sink's format."""
        if self.format == "parquet":
            return ParquetFileSink(self.schema)
        return PayloadLinesFileSink() if self.context.raw else JsonLinesFileSink()


def _block_data(block: list[Record], row: Callable[[Record], Any]) -> Block:
    return Block([row(record) for record in block])


class _BlockSink(fileio.FileSink):
    """Writes each record of a block through the sink of single records it wraps."""

    def __init__(self, records: fileio.FileSink) -> None:
        self._records = records

    def open(self, fh: Any) -> None:
        self._records.open(fh)

    def write(self, block: list[dict[str, Any]]) -> None:
        for record in block:
            self._records.write(record)

    def flush(self) -> None:
        self._records.flush()
