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
writes each record's original payload as a line instead. Files and streams alike are written
bundle by bundle, whatever the records' event times (a record behind the watermark is still
written, never dropped as late): each bundle's records go to a file of their own (a new one every
`FILE_ROWS` records, so a bounded read's single large bundle never sits in memory whole),
``PREFIX-UTCTIME-TAG.SUFFIX``, written under a hidden temporary name, flushed to disk (``fsync``)
and renamed into place before the bundle ends, so a source position committed after the bundle
never covers records that a kill could still lose, and no reader ever sees half a file. A bundle
that the runner retries is written again, to a new file: delivery is at least once. One
``ParDo`` does it all (no shuffle). A folder that cannot be written when the sink is built
(permission denied, an immutable folder, a read-only disk) is refused then, before the run. A
write that fails with an error that may go away (disk full, I/O error, stale network mount, and
permission denied or a read-only disk in a folder that was writable when the sink was built) is
tried again as a sink outage (`transforms.io.retry`, ``attempts=forever`` by default; with
``attempts=N`` the bundle fails: a file sink has nothing to dead-letter to). Files of earlier runs
in the folder are kept; a run that finds some logs a warning, since a reader of the folder sees
them with its own (use an empty folder, or another ``prefix``, to keep runs apart).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes

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

log = logging.getLogger(__name__)
# Records a file holds at most: the rows held in memory before they are written.
FILE_ROWS = 20_000


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


_ENCODER = msgspec.json.Encoder(enc_hook=_encode_fallback)


class JsonLinesFileSink:
    """Writes record dicts as JSON Lines; bytes become base64.

    `chunk` encodes a block's records at once, so that what waits for the file is bytes.
    """

    def open(self, fh: Any) -> None:
        self._fh = fh

    def chunk(self, records: list[Any]) -> Any:
        """What is held of ``records`` until they are written (`write_chunks`): their lines."""
        return _ENCODER.encode_lines(records)

    def write_chunks(self, chunks: Iterable[Any]) -> None:
        """Writes the chunks held, in order."""
        self._fh.writelines(chunks)

    def flush(self) -> None:
        self._fh.flush()


class PayloadLinesFileSink(JsonLinesFileSink):
    """Writes original payloads (bytes) as lines, unchanged (`SinkContext.raw`).

    What a file source reads back as the same messages (files keep no attributes).
    """

    def chunk(self, records: list[Any]) -> Any:
        return b"".join(record + b"\n" for record in records)


def _data(record: Record) -> Any:
    return record.data


def _with_metadata(record: Record) -> Any:
    return row_with_metadata(record, attributes_as_text=False)


def _payload(record: Record) -> Any:
    return message_payload(record, True, msgspec.json.encode)


# Write errors of a disk or mount in trouble: they may go away by themselves.
_OUTAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE}
)
# Write errors of a folder made unwritable: permissions (EACCES), an immutable folder or a
# security policy (EPERM), a disk remounted read-only (EROFS). A folder that is so when the sink
# is built is refused then (`_check_writable`); one that becomes so during a run was writable
# when it started, and is an outage that someone ends.
_NOT_WRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
# Write errors retried as a sink outage.
_TRANSIENT_ERRNOS = _OUTAGE_ERRNOS | _NOT_WRITABLE_ERRNOS


def _transient_write(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS


def _check_writable(endpoint: Endpoint, folder: str) -> None:
    """Refuses a sink folder that cannot be written now, before a run holds on it forever.

    Creates and removes a hidden probe file in the folder, or, when the folder does not exist
    yet, in the nearest folder above it that does (where it will be made): the probe meets what
    a write would (permissions, ACLs, an immutable folder, a read-only disk), root included. An
    error that may go away (disk full, I/O error) passes: the run retries it as an outage. A
    file where a folder is wanted passes too: making the folder refuses it.

    Raises:
        EndpointError: naming the folder and what to change.
    """
    folder = os.path.normpath(folder)
    existing = folder
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return
    probe = os.path.join(existing, f".probe-{uuid.uuid4().hex}.tmp")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as error:
        if error.errno in _OUTAGE_ERRNOS:
            return
        where = "" if existing == folder else f"{folder} cannot be made here: "
        raise EndpointError(
            f"{endpoint}: {where}the folder {existing} is not writable ({error.strerror}): make "
            "it writable (its permissions or owner, chattr -i, a disk mounted read-write) or "
            "name another folder"
        ) from None
    with contextlib.suppress(OSError):
        os.remove(probe)


class _WriteBundleFiles(beam.DoFn):
    """Writes each bundle's blocks of records durably to files of their own.

    A file is written under a hidden temporary name, flushed to disk, renamed into place and
    the folder flushed, when `FILE_ROWS` records are held and in ``finish_bundle``: when the
    bundle is done, its records are on disk. Failed writes are tried again per ``retry``.
    """

    def __init__(
        self,
        folder: str,
        prefix: str,
        suffix: str,
        sink: JsonLinesFileSink | ParquetFileSink,
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
        self._chunks: list[Any] = []  # the sink's chunks of the blocks held (`chunk`)
        self._held = 0  # records in them

    def process(self, block: list[Record]) -> None:
        row = self._row
        self._chunks.append(self._sink.chunk([row(record) for record in block]))
        self._held += len(block)
        if self._held >= FILE_ROWS:
            self._write_held()

    def _write(self, name: str) -> None:
        temporary = os.path.join(self._folder, f".{name}.tmp")
        try:
            with open(temporary, "wb") as handle:
                self._sink.open(handle)
                self._sink.write_chunks(self._chunks)
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
        if self._held:
            self._write_held()

    def _write_held(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{self._prefix}-{stamp}-{uuid.uuid4().hex}{self._suffix}"
        self._retry.call(lambda: self._write(name), _transient_write, self._folder)
        self._chunks, self._held = [], 0


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
        _check_writable(endpoint, self.folder)

    def expand(self, blocks: beam.PCollection) -> None:
        """Writes blocks (lists) of `Record`s; returns None (a failed write fails the bundle)."""
        os.makedirs(self.folder, exist_ok=True)
        suffix = _FORMATS[self.format]
        earlier = glob.glob(os.path.join(glob.escape(self.folder), f"{self.prefix}-*{suffix}"))
        if earlier:
            log.warning(
                "%s: the folder already holds %d %s-*%s files of earlier runs; this run adds "
                "its own beside them (use an empty folder, or another prefix=, to keep runs "
                "apart)",
                self.endpoint,
                len(earlier),
                self.prefix,
                suffix,
            )
        files = _WriteBundleFiles(
            self.folder, self.prefix, suffix, self._records(), self.retry, self._row
        )
        _ = blocks | "Files" >> beam.ParDo(files)
        _ = blocks | "Count" >> Count(self.context.counter)
        return None

    def _records(self) -> JsonLinesFileSink | ParquetFileSink:
        """The writer of record dicts in the sink's format."""
        if self.format == "parquet":
            assert self.schema is not None  # refused in __init__
            return ParquetFileSink(self.schema)
        return PayloadLinesFileSink() if self.context.raw else JsonLinesFileSink()
