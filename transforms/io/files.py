"""``file://`` endpoints: JSON Lines in, JSON Lines or Parquet out.

Source: ``file:///data/in/*.jsonl`` reads every matching file (bounded), one `Message` per line
in `Block`s of `BLOCK_SIZE` lines, with the file path and line number as its origin. Lines are
kept as the original bytes. Files ending in ``.gz``, ``.bz2``, ``.zst``, ``.deflate``, ``.xz`` or
``.lzma`` are decompressed (`transforms.io.decompress`). Files are read in chunks: a line longer
than the source's ``max_payload_bytes`` is never held whole, it comes out as its first 64 KiB
with its size and SHA-256 (`Message.oversize`), and Parse dead-letters it as ``too_large``.

Sink: ``file:///data/out?format=jsonl|parquet&prefix=part`` writes blocks of records (bytes as
base64 in JSON Lines) into files in that folder; a sink of original messages (`SinkContext.raw`)
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
import datetime as dt
import errno
import glob
import itertools
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.transforms.window import GlobalWindow

from transforms.blocks import Block
from transforms.event_time import parse_timestamp
from transforms.io.base import BLOCK_SIZE, Sink, SinkContext, Source, message_payload
from transforms.io.decompress import decompressed
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.lines import read_lines
from transforms.io.retry import RetryPolicy
from transforms.message import Message, Origin, Record
from transforms.metrics import Count
from transforms.schema import Field, Schema

__all__ = ["FileSink", "FileSource", "arrow_schema"]

_FORMATS = {"jsonl": ".jsonl", "parquet": ".parquet"}


def _messages(readable: fileio.ReadableFile, max_bytes: int) -> Iterator[Message]:
    path = readable.metadata.path
    with readable.open(compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        lines = read_lines(decompressed(raw, path), max_bytes)
        for number, (payload, oversize) in enumerate(lines, start=1):
            yield Message(payload, {}, Origin("file", path=path, line=number), oversize)


@beam.typehints.with_output_types(Block)
class _ReadBlocks(beam.DoFn):
    """A file -> `Block`s of the `Message`s of its lines, `BLOCK_SIZE` lines each."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes

    def process(self, readable: fileio.ReadableFile) -> Iterator[Block]:
        messages = _messages(readable, self._max_bytes)
        while block := Block(itertools.islice(messages, BLOCK_SIZE)):
            yield block


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

    @staticmethod
    def row(record: Record) -> Any:
        """What this writer takes of a record: its data."""
        return record.data

    def open(self, fh: Any) -> None:
        self._fh = fh
        self._encoder = msgspec.json.Encoder(enc_hook=_encode_fallback)

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(self._encoder.encode(record) + b"\n")

    def flush(self) -> None:
        self._fh.flush()


class PayloadLinesFileSink(JsonLinesFileSink):
    """Writes each record's original payload as a line, unchanged (`SinkContext.raw`).

    What a file source reads back as the same messages (files keep no attributes).
    """

    @staticmethod
    def row(record: Record) -> Any:
        """What this writer takes of a record: its original payload."""
        return message_payload(record, True, msgspec.json.encode)

    def write(self, record: Any) -> None:
        self._fh.write(record + b"\n")


_ARROW_TYPES = {
    "STRING": pa.string(),
    "BYTES": pa.binary(),
    "INTEGER": pa.int64(),
    "FLOAT": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _to_datetime(value: Any) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=round(parse_timestamp(value) * 1_000_000))


def _to_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _arrow_type(field: Field) -> pa.DataType:
    if field.type == "RECORD":
        kind: pa.DataType = pa.struct([_arrow_field(child) for child in field.fields])
    else:
        # Dates, times, numerics, geography and JSON are kept as text.
        kind = _ARROW_TYPES.get(field.type, pa.string())
    return pa.list_(kind) if field.mode == "REPEATED" else kind


def _converter(field: Field) -> Callable[[Any], Any] | None:
    """Returns how a JSON value of ``field`` becomes an Arrow value, or None when it is as is."""
    one: Callable[[Any], Any] | None
    if field.type == "RECORD":
        one = _row_converter(field.fields)
    elif field.type == "TIMESTAMP":
        one = _to_datetime
    elif _ARROW_TYPES.get(field.type, pa.string()) == pa.string() and field.type != "STRING":
        one = _to_text
    else:
        return None
    if field.mode == "REPEATED":
        return lambda values: None if values is None else [one(v) for v in values]
    return lambda value: None if value is None else one(value)


def _row_converter(fields: tuple[Field, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    converters = [(f.name, c) for f in fields if (c := _converter(f)) is not None]

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        if not converters:
            return row
        row = dict(row)
        for name, converter in converters:
            if name in row:
                row[name] = converter(row[name])
        return row

    return convert


def _arrow_field(field: Field) -> pa.Field:
    return pa.field(field.name, _arrow_type(field), nullable=field.mode != "REQUIRED")


def arrow_schema(schema: Schema) -> pa.Schema:
    """Returns the Parquet (Arrow) schema of a record schema."""
    return pa.schema([_arrow_field(field) for field in schema.fields])


ROW_GROUP_ROWS = 20_000
"""Rows the Parquet sink holds before it writes them as a row group."""


class ParquetFileSink(fileio.FileSink):
    """Writes record dicts as Parquet, `ROW_GROUP_ROWS` rows at a time.

    It takes a record's data (``row``), as `JsonLinesFileSink` does.

    With a schema, each group of rows is written as a row group as soon as it is complete.
    Without one, each group is inferred as a table and kept in a temporary Arrow file; when the
    file is closed, the groups are written as row groups of the schema that unifies theirs (a
    column missing from a group is null there, an all-null column takes the type of the others),
    so memory holds one group at a time either way.
    """

    row = staticmethod(JsonLinesFileSink.row)

    def __init__(self, schema: Schema | None, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self._schema = arrow_schema(schema) if schema is not None else None
        self._convert = _row_converter(schema.fields) if schema is not None else None
        self._row_group_rows = row_group_rows

    def open(self, fh: Any) -> None:
        self._fh = fh
        self._rows: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        self._spilled: list[str] = []  # the temporary Arrow files of the groups (no schema)

    def write(self, record: dict[str, Any]) -> None:
        self._rows.append(self._convert(record) if self._convert is not None else record)
        if len(self._rows) >= self._row_group_rows:
            self._write_rows()

    def _write_rows(self) -> None:
        if self._schema is not None:
            self._write_group(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []
            return
        # Every field of every row of the group (from_pylist would take the first row's only).
        rows = pa.array(self._rows) if self._rows else None
        table = pa.Table.from_struct_array(rows) if rows is not None else pa.table({})
        self._rows = []
        with tempfile.NamedTemporaryFile(suffix=".arrow", delete=False) as spill:
            self._spilled.append(spill.name)
        with pa.OSFile(spill.name, "wb") as sink, pa.ipc.new_file(sink, table.schema) as ipc:
            ipc.write_table(table)

    def _write_group(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._fh, table.schema)
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))

    def _write_spilled(self) -> None:
        """Writes the spilled groups, each made to fit the schema unifying them all."""
        schemas = []
        for path in self._spilled:
            with pa.memory_map(path) as source:
                schemas.append(pa.ipc.open_file(source).schema)
        schema = pa.unify_schemas(schemas, promote_options="permissive")
        for path in self._spilled:
            with pa.memory_map(path) as source:
                table = pa.ipc.open_file(source).read_all()
                if not table.schema.equals(schema):
                    table = pa.Table.from_pylist(table.to_pylist(), schema=schema)
                self._write_group(table)
            os.remove(path)
        self._spilled = []

    def flush(self) -> None:
        if self._rows or (self._writer is None and not self._spilled):
            self._write_rows()
        if self._spilled:
            self._write_spilled()
        assert self._writer is not None
        self._writer.close()
        self._writer = None


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
        sink: JsonLinesFileSink | ParquetFileSink,
        retry: RetryPolicy,
    ) -> None:
        self._folder = folder
        self._prefix = prefix
        self._suffix = suffix
        self._sink = sink
        self._retry = retry

    def start_bundle(self) -> None:
        self._rows: list[dict[str, Any]] = []

    def process(self, block: list[Record]) -> None:
        self._rows.extend(self._sink.row(record) for record in block)

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
        endpoint.check_params(frozenset({"format", "prefix", "attempts"}))
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
            files = _WriteBundleFiles(self.folder, self.prefix, suffix, self._records(), self.retry)
            _ = blocks | "Files" >> beam.ParDo(files)
        else:
            _ = (
                blocks
                | "Data" >> beam.Map(_block_data, self._records().row).with_output_types(Block)
                | "Files"
                >> fileio.WriteToFiles(
                    self.folder,
                    file_naming=_file_naming(self.prefix, suffix),
                    sink=self._file_sink,
                )
            )
        _ = blocks | "Count" >> Count(self.context.counter)
        return None

    def _records(self) -> JsonLinesFileSink | ParquetFileSink:
        """The writer of single record dicts in the sink's format."""
        if self.format == "parquet":
            return ParquetFileSink(self.context.schema)
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
