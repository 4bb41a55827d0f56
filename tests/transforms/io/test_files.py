"""Tests of transforms.io.files and .parquet: the JSON Lines source, the JSONL and Parquet sinks."""

from __future__ import annotations

import base64
import builtins
import bz2
import contextlib
import datetime as dt
import errno
import glob
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import shutil
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.testing.util import assert_that, equal_to

from tests.support import run_sink, write_dead_letters
from transforms.blocks import Batch, Block
from transforms.dead_letter import DEAD_LETTER_SCHEMA, MAX_PAYLOAD_PREFIX, error_record
from transforms.dead_letter_writer import dead_letter_sink
from transforms.io import files
from transforms.io.base import SinkContext
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.files import FileSink, FileSource, JsonLinesFileSink, _WriteBundleFiles
from transforms.io.lines import CHUNK_BYTES, read_lines
from transforms.io.parquet import ROW_GROUP_ROWS, arrow_schema
from transforms.io.registry import make_sink, make_source
from transforms.io.retry import RetryPolicy
from transforms.message import Message, Origin, Oversize, Record
from transforms.metrics import SINK_OUTAGE_SECONDS, SINK_RETRIES, WRITTEN
from transforms.parse import ParseJson
from transforms.schema import Field, Schema

pytestmark = pytest.mark.usefixtures("live_direct_runner")

LINES = [
    b'{"id": 1, "name": "alpha"}',
    b'{"id": 2, "name": "br\xc3\xbcder"}',
    b"not json at all",
    b"",
    b'{"id": 3}\r',  # a CRLF line: the \r goes with the terminator
    b"   ",
    b'{"bad": "\xff\xfe"}',
    b'{"tab":\t"x"}\r\r',  # only one \r belongs to the terminator
    b'{"last": true}',  # no trailing newline
]


def _expected_payload(raw: bytes) -> bytes:
    return raw[:-1] if raw.endswith(b"\r") else raw


def _write_jsonl(path: Path) -> None:
    content = b"\n".join(LINES)
    path.write_bytes(content)
    assert not content.endswith(b"\n")


def test_file_source_one_message_per_line(tmp_path: Path) -> None:
    first = tmp_path / "a.jsonl"
    second = tmp_path / "b.jsonl"
    _write_jsonl(first)
    second.write_bytes(b'{"only": 1}\r\n{"two": 2}\n')
    (tmp_path / "ignored.txt").write_bytes(b"nope\n")
    expected = [
        Message(_expected_payload(raw), {}, Origin("file", path=str(first), line=i + 1))
        for i, raw in enumerate(LINES)
    ] + [
        Message(b'{"only": 1}', {}, Origin("file", path=str(second), line=1)),
        Message(b'{"two": 2}', {}, Origin("file", path=str(second), line=2)),
    ]
    with beam.Pipeline() as p:
        messages = p | make_source(f"file://{tmp_path}/*.jsonl") | beam.FlatMap(list)
        assert_that(messages, equal_to(expected))


def _compress(extension: str, data: bytes) -> bytes:
    """``data`` compressed as a file ending in ``extension`` is, in two concatenated parts."""
    compress: dict[str, Any] = {
        ".gz": gzip.compress,
        ".bz2": bz2.compress,
        ".zst": lambda part: zstandard.ZstdCompressor().compress(part),
        ".deflate": zlib.compress,
        ".xz": lzma.compress,
        ".lzma": lambda part: lzma.compress(part, format=lzma.FORMAT_ALONE),
    }
    if extension in (".deflate", ".lzma"):  # single-stream formats
        return compress[extension](data)
    middle = len(data) // 2
    return compress[extension](data[:middle]) + compress[extension](data[middle:])


def test_file_source_reads_compressed_files_by_extension(tmp_path: Path) -> None:
    content = b"\n".join(LINES)
    (tmp_path / "plain.jsonl").write_bytes(content)
    extensions = (".gz", ".bz2", ".zst", ".deflate", ".xz", ".lzma")
    for extension in extensions:
        (tmp_path / f"c.jsonl{extension}").write_bytes(_compress(extension, content))
    source = make_source(f"file://{tmp_path}/*.jsonl*")
    expected = [
        Message(_expected_payload(raw), {}, Origin("file", path=str(tmp_path / name), line=i + 1))
        for name in ["plain.jsonl", *(f"c.jsonl{e}" for e in extensions)]
        for i, raw in enumerate(LINES)
    ]
    with beam.Pipeline() as p:
        blocks = p | source
        assert_that(
            blocks | beam.Map(lambda block: type(block).__name__),
            equal_to(["Block"] * (1 + len(extensions))),
            label="blocks",
        )
        assert_that(blocks | beam.FlatMap(list), equal_to(expected), label="messages")


def test_read_lines_bounds_memory_and_keeps_crlf_and_line_ends() -> None:
    # Chunks of 3 bytes: lines and line ends fall across chunks everywhere.
    long_line = b"x" * 20 + b"\r"
    data = b"ab\r\n" + long_line + b"\n\nabcde\r\r\n" + long_line
    got = list(read_lines(io.BytesIO(data), max_bytes=5, chunk_bytes=3))
    digest = Oversize(20, hashlib.sha256(b"x" * 20).hexdigest())
    assert got == [
        (b"ab", None),
        (b"x" * 20, digest),
        (b"", None),
        (b"abcde\r", Oversize(6, hashlib.sha256(b"abcde\r").hexdigest())),
        (b"x" * 20, digest),
    ]


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, CHUNK_BYTES])
def test_a_byte_order_mark_at_the_start_is_not_part_of_the_first_line(chunk_bytes: int) -> None:
    bom = "\ufeff".encode()
    data = bom + b'{"a": 1}\r\n' + bom + b'{"b": 2}\n'
    got = [line for line, _ in read_lines(io.BytesIO(data), 100, chunk_bytes)]
    # Only the stream's start: a mark inside the data is the line's own (Parse refuses it).
    assert got == [b'{"a": 1}', bom + b'{"b": 2}']
    assert [line for line, _ in read_lines(io.BytesIO(bom), 100, chunk_bytes)] == []


def test_an_oversize_line_is_skipped_while_read_and_dead_lettered_truncated(
    tmp_path: Path,
) -> None:
    huge = b'{"pad": "' + b"y" * (3 * CHUNK_BYTES) + b'"}'
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"id": 1}\n' + huge + b'\n{"id": 3}\n'))
    source = make_source(f"file://{path}", max_payload_bytes=1000)
    with beam.Pipeline() as p:
        blocks, errors = p | source | ParseJson("pipe", max_bytes=1000)
        assert_that(
            blocks
            | beam.FlatMap(lambda block: [(r.data["id"], r.origin.origin.line) for r in block]),
            equal_to([(1, 1), (3, 3)]),
            label="records",
        )

        def check(letters: list[dict[str, Any]]) -> None:
            assert len(letters) == 1
            (letter,) = letters
            assert letter["reason"] == "too_large"
            assert letter["source"] == {"system": "file", "path": str(path), "line": 2}
            assert letter["payload_truncated"] is True
            assert letter["payload_bytes"] == huge[:MAX_PAYLOAD_PREFIX]
            assert letter["payload_string"] is None
            assert letter["payload_size"] == len(huge)
            assert letter["payload_sha256"] == hashlib.sha256(huge).hexdigest()
            assert str(len(huge)) in letter["error_message"]

        assert_that(errors, check, label="dead letters")


def test_file_source_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with beam.Pipeline() as p:
        assert_that(p | make_source(f"file://{tmp_path}/empty.jsonl"), equal_to([]))


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("file:///definitely/not/here/*.jsonl", "no file matches"),
        ("file://somehost/x.jsonl", "three slashes"),
        ("file:///tmp/x.jsonl?format=jsonl", "unknown parameters"),
    ],
)
def test_file_source_errors(uri: str, needle: str) -> None:
    with pytest.raises(EndpointError, match=needle):
        FileSource(Endpoint.parse(uri))


def test_file_source_pattern_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(EndpointError, match="no file matches"):
        make_source(f"file://{tmp_path}/*.jsonl")


# --- sinks ---------------------------------------------------------------------------------

SCHEMA = Schema(
    (
        Field("id", "INTEGER", "REQUIRED"),
        Field("name", "STRING"),
        Field("score", "FLOAT"),
        Field("ok", "BOOLEAN"),
        Field("blob", "BYTES"),
        Field("ts", "TIMESTAMP"),
        Field("tags", "STRING", "REPEATED"),
        Field("meta", "RECORD", fields=(Field("source", "STRING"), Field("n", "INTEGER"))),
    )
)
ROWS = [
    {
        "id": 1,
        "name": "alpha",
        "score": 1.5,
        "ok": True,
        "blob": b"\x00\xffraw",
        "ts": "2026-11-25T10:00:00Z",
        "tags": ["a", "b"],
        "meta": {"source": "web", "n": 3},
    },
    {
        "id": 2,
        "name": None,
        "score": None,
        "ok": False,
        "blob": None,
        "ts": None,
        "tags": [],
        "meta": None,
    },
]


def _output_files(folder: Path, suffix: str) -> list[str]:
    return sorted(
        f
        for f in glob.glob(str(folder / f"part*{suffix}"))
        if not os.path.basename(f).startswith(".")
    )


def _write(uri: str, records: list[Record], context: SinkContext) -> None:
    with beam.Pipeline() as p:
        result = p | beam.Create(records) | Batch() | make_sink(uri, context)
        assert result is None


def test_file_sink_jsonl(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    records = [Record(row) for row in ROWS] + [Record({"id": 3, "plain": "dict"})]
    _write(f"file://{folder}", records, SinkContext("pipe", SCHEMA))
    files = _output_files(folder, ".jsonl")
    assert files
    lines = [line for f in files for line in Path(f).read_bytes().splitlines()]
    got = sorted((json.loads(line) for line in lines), key=lambda r: r["id"])
    expected_first = dict(ROWS[0], blob=base64.b64encode(b"\x00\xffraw").decode("ascii"))
    assert got == [expected_first, ROWS[1], {"id": 3, "plain": "dict"}]


def test_a_sink_folder_holding_earlier_runs_keeps_them_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "out"
    context = SinkContext("pipe", SCHEMA)

    def warnings() -> list[str]:
        found = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        caplog.clear()
        return found

    with caplog.at_level(logging.WARNING, logger="transforms.io.files"):
        _write(f"file://{folder}", [Record(ROWS[1])], context)
        assert warnings() == []
        _write(f"file://{folder}?prefix=other", [Record(ROWS[1])], context)
        assert warnings() == []  # another prefix: runs kept apart
        _write(f"file://{folder}", [Record(ROWS[1])], context)
        (warning,) = warnings()
    assert "already holds 1 part-*.jsonl files of earlier runs" in warning
    assert sorted(path.name.split("-")[0] for path in folder.glob("*.jsonl")) == [
        "other", "part", "part"
    ]  # fmt: skip


def test_file_sink_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "pq"
    _write(
        f"file://{folder}?format=parquet&prefix=part",
        [Record(row) for row in ROWS],
        SinkContext("pipe", SCHEMA),
    )
    files = _output_files(folder, ".parquet")
    assert files
    tables = [pq.read_table(f) for f in files]
    for table in tables:
        assert table.schema.equals(arrow_schema(SCHEMA))
    rows = sorted((r for t in tables for r in t.to_pylist()), key=lambda r: r["id"])
    # Parquet keeps timestamps as UTC timestamps, whatever form the JSON record gave.
    expected = [
        {**row, "ts": None if row["ts"] is None else dt.datetime.fromisoformat(row["ts"])}
        for row in ROWS
    ]
    assert rows == expected


def test_file_sink_parquet_dead_letters_have_the_dead_letter_columns(tmp_path: Path) -> None:
    folder = tmp_path / "dl"
    letter = error_record(
        Message(b"\xff", {"k": "v"}, Origin("file", path="/in", line=3)),
        pipeline="pipe",
        step="parse",
        reason="invalid_utf8",
        error_type="InvalidUtf8",
        error_message="not UTF-8",
    )
    write_dead_letters([letter], dead_letter_sink(f"file://{folder}?format=parquet", "pipe"))
    (table,) = [pq.read_table(f) for f in _output_files(folder, ".parquet")]
    assert table.schema.equals(arrow_schema(DEAD_LETTER_SCHEMA))
    (row,) = table.to_pylist()
    assert (row["reason"], row["payload_bytes"], row["payload_string"]) == (
        "invalid_utf8",
        b"\xff",
        None,
    )
    assert row["source"]["line"] == 3
    assert row["attributes"] == [{"key": "k", "value": "v"}]


def test_parquet_sink_writes_row_groups_as_it_goes(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    count = 2 * ROW_GROUP_ROWS + 5
    records = [Record({"id": i, "name": f"n{i}"}) for i in range(count)]
    with beam.Pipeline() as p:
        _ = (
            p
            | beam.Create([Block(records)])
            | make_sink(f"file://{folder}?format=parquet", SinkContext("pipe", SCHEMA))
        )
    (path,) = _output_files(folder, ".parquet")
    parquet = pq.ParquetFile(path)
    assert parquet.num_row_groups == 3
    assert parquet.metadata.num_rows == count
    assert sorted(parquet.read().column("id").to_pylist()) == list(range(count))


def test_arrow_schema_types() -> None:
    schema = arrow_schema(SCHEMA)
    assert schema.field("id").type == pa.int64() and not schema.field("id").nullable
    assert schema.field("name").type == pa.string() and schema.field("name").nullable
    assert schema.field("score").type == pa.float64()
    assert schema.field("ok").type == pa.bool_()
    assert schema.field("blob").type == pa.binary()
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("meta").type == pa.struct(
        [pa.field("source", pa.string()), pa.field("n", pa.int64())]
    )


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("file:///tmp/out?format=csv", "format must be one of"),
        ("file:///tmp/out?compression=gzip", "unknown parameters"),
        ("file:///tmp/out?attempts=0", "attempts must be forever"),
        ("file://", "absolute/folder"),
    ],
)
def test_file_sink_errors(uri: str, needle: str) -> None:
    with pytest.raises(EndpointError, match=needle):
        FileSink(Endpoint.parse(uri), SinkContext("pipe"))


def test_parquet_without_a_schema_is_refused_before_the_run() -> None:
    with pytest.raises(EndpointError, match="format=parquet needs .* --schema"):
        FileSink(Endpoint.parse("file:///tmp/out?format=parquet"), SinkContext("pipe"))


def test_parquet_sink_writes_schema_valid_non_string_values(tmp_path: Path) -> None:
    schema = Schema((Field("ts", "TIMESTAMP"), Field("price", "NUMERIC"), Field("doc", "JSON")))
    row = {"ts": 1_764_064_800, "price": 2.5, "doc": {"a": 1}}
    schema.validator()(dict(row))
    folder = tmp_path / "pq"
    _write(f"file://{folder}?format=parquet", [Record(row)], SinkContext("pipe", schema))
    rows = [r for f in _output_files(folder, ".parquet") for r in pq.read_table(f).to_pylist()]
    assert len(rows) == 1
    assert rows[0]["ts"] == dt.datetime.fromtimestamp(1_764_064_800, tz=dt.timezone.utc)
    assert float(rows[0]["price"]) == 2.5
    assert json.loads(rows[0]["doc"]) == {"a": 1}


def test_endless_input_writes_every_record_even_behind_the_watermark(tmp_path: Path) -> None:
    from pipelines.catalog import get_pipeline
    from pipelines.framework.run import run_pipeline

    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        [
            "--source=generator://events?count=400&rate=20&speed=20&live=true&late=0.3&seed=4",
            "--schema=builtin:events",
            f"--sink=file://{tmp_path}/out",
            f"--dead_letter=file://{tmp_path}/dlq",
        ],
    )
    lines = sum(1 for path in (tmp_path / "out").glob("*.jsonl") for _ in path.open())
    assert report.count("written") == 400
    assert lines == 400
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind


def _bundle_writer(folder: Path, policy: RetryPolicy) -> Any:
    return _WriteBundleFiles(str(folder), "part", ".jsonl", JsonLinesFileSink(), policy)


def test_an_endless_run_writes_each_bundle_durably_through_a_disk_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync, failures = os.fsync, []

    def full_disk_twice(fd: int) -> None:
        if len(failures) < 2:
            failures.append(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk_twice)
    writer = _bundle_writer(tmp_path, RetryPolicy(initial=0.001, maximum=0.001))
    for bundle in ([1, 2, 3], [4]):
        writer.start_bundle()
        writer.process(Block(Record({"n": n}) for n in bundle))
        writer.finish_bundle()  # when it returns, the bundle's file is in place

    files = sorted(tmp_path.iterdir())
    assert len(failures) == 2
    assert [p.name.startswith("part-") and p.suffix == ".jsonl" for p in files] == [True, True]
    rows = sorted(json.loads(line)["n"] for path in files for line in path.open())
    assert rows == [1, 2, 3, 4]


def test_a_bounded_retry_of_a_file_write_fails_the_bundle_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    writer = _bundle_writer(tmp_path, RetryPolicy(attempts=2, initial=0.001, maximum=0.001))
    writer.start_bundle()
    writer.process(Block([Record({"n": 1})]))
    with pytest.raises(OSError, match="No space left"):
        writer.finish_bundle()
    assert list(tmp_path.iterdir()) == []


def test_a_bundle_larger_than_a_file_is_written_in_several_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "FILE_ROWS", 2)
    writer = _bundle_writer(tmp_path, RetryPolicy(attempts=1))
    writer.start_bundle()
    for bundle in ([1], [2, 3], [4]):  # a file when two rows or more are held, then the rest
        writer.process(Block(Record({"n": n}) for n in bundle))
    assert len(list(tmp_path.iterdir())) == 1
    writer.finish_bundle()
    rows = [[json.loads(line)["n"] for line in path.open()] for path in tmp_path.iterdir()]
    assert sorted(rows) == [[1, 2, 3], [4]]


def _writable(folder: Path) -> bool:
    try:
        (folder / ".can-i-write").touch()
    except OSError:
        return False
    (folder / ".can-i-write").unlink()
    return True


@contextlib.contextmanager
def _unwritable(folder: Path) -> Iterator[int]:
    """Makes ``folder`` unwritable for real while the block runs; yields the errno writes get.

    ``chmod`` stops a user (EACCES), not root: as root the folder is made immutable with
    ``chattr +i`` (EPERM), as in the trial. Skips when neither stops this process (root on a
    file system without immutable files, or without CAP_LINUX_IMMUTABLE).
    """
    folder.chmod(0o500)
    immutable = False
    try:
        code = errno.EACCES
        if _writable(folder) and shutil.which("chattr"):
            code = errno.EPERM
            immutable = subprocess.run(["chattr", "+i", str(folder)], check=False).returncode == 0
        if _writable(folder):
            pytest.skip("neither chmod nor chattr +i makes a folder unwritable for this user")
        yield code
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o700)


@pytest.mark.parametrize("missing", ["", "/new/out"], ids=["the folder", "a folder to make"])
def test_a_sink_on_an_unwritable_folder_is_refused_before_the_run(
    tmp_path: Path, missing: str
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    uri = f"file://{folder}{missing}"
    with _unwritable(folder):
        with pytest.raises(EndpointError) as refused:
            FileSink(Endpoint.parse(uri), SinkContext("pipe"))
        # The command line: one error line naming the folder, a usage error (exit 2), no run.
        run = subprocess.run(
            [sys.executable, "-m", "pipelines", "run", "events_to_bigquery",
             "--source=generator://events?count=1", "--sink=stdout://",
             f"--dead_letter={uri}"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    message = str(refused.value)
    assert f"the folder {folder} is not writable" in message
    assert "name another folder" in message
    assert (f"{folder}/new/out cannot be made here" in message) == bool(missing)
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"the folder {folder} is not writable" in errors[0], run.stderr
    assert "Traceback" not in run.stderr
    assert list(folder.iterdir()) == []


def test_building_a_sink_leaves_nothing_in_its_folder(tmp_path: Path) -> None:
    FileSink(Endpoint.parse(f"file://{tmp_path}"), SinkContext("pipe"))
    FileSink(Endpoint.parse(f"file://{tmp_path}/new"), SinkContext("pipe"))
    assert list(tmp_path.iterdir()) == []  # the probe files are gone, no folder made yet


def test_a_folder_made_unwritable_during_a_run_holds_the_write_until_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A real outage: the folder is writable when the sink is built, then unwritable (chmod, or
    # chattr +i as root) for about 2 s while the pipeline writes, then writable again.
    folder = tmp_path / "out"
    folder.mkdir()
    sink = FileSink(Endpoint.parse(f"file://{folder}"), SinkContext("pipe"))
    sink.retry = RetryPolicy(initial=0.2, maximum=0.4)
    records = [Record({"n": n}) for n in range(50)]
    with caplog.at_level(logging.WARNING, logger="transforms.io.retry"):
        with _unwritable(folder) as code:
            back = threading.Timer(2.0, folder.chmod, (0o700,))  # EACCES: chmod ends it
            if code == errno.EPERM:
                back = threading.Timer(2.0, subprocess.run, (["chattr", "-i", str(folder)],))
            back.start()
            try:
                counters = run_sink(records, sink)
            finally:
                back.cancel()
                back.join()

    rows = sorted(json.loads(line)["n"] for path in folder.iterdir() for line in path.open())
    assert rows == list(range(50))
    assert all(not path.name.startswith(".") for path in folder.iterdir())
    assert counters[WRITTEN] == 50
    assert counters[SINK_RETRIES] >= 1
    assert counters[SINK_OUTAGE_SECONDS] >= 1
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"{folder} is unavailable" in m and os.strerror(code) in m for m in messages)
    assert any(f"{folder} is available again" in m for m in messages)


def _failing_open(code: int, times: int, failures: list[str]) -> Any:
    """``open`` failing ``times`` times with ``code`` as an unwritable folder makes it fail."""

    def fake(path: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode and len(failures) < times:
            failures.append(path)
            raise OSError(code, os.strerror(code), path)
        return builtins.open(path, mode, *args, **kwargs)

    return fake


def _writing_through(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    times: int,
    failures: list[str],
    policy: RetryPolicy,
    numbers: list[int],
) -> Any:
    """A bundle writer that has taken records ``{"n": N}`` while ``open`` fails ``times`` times
    with ``code`` (see `_failing_open`); the bundle is not finished yet."""
    monkeypatch.setattr(files, "open", _failing_open(code, times, failures), raising=False)
    writer = _bundle_writer(tmp_path, policy)
    writer.start_bundle()
    writer.process(Block(Record({"n": n}) for n in numbers))
    return writer


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS], ids=errno.errorcode.get)
def test_a_write_refused_as_unwritable_mid_run_is_retried_until_the_folder_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    # Injected where the write meets the OS (creating the temporary file, where a real
    # unwritable folder fails first): a read-only remount (EROFS) needs mount privileges a test
    # run does not have; the real EACCES/EPERM case is the test above.
    failures: list[str] = []
    policy = RetryPolicy(initial=0.001, maximum=0.001)
    writer = _writing_through(tmp_path, monkeypatch, code, 3, failures, policy, [1, 2, 3])
    writer.finish_bundle()

    assert len(failures) == 3
    (path,) = tmp_path.iterdir()
    assert [json.loads(line)["n"] for line in path.open()] == [1, 2, 3]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS], ids=errno.errorcode.get)
def test_a_bounded_retry_of_an_unwritable_folder_fails_the_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    failures: list[str] = []
    policy = RetryPolicy(attempts=2, initial=0.001, maximum=0.001)
    writer = _writing_through(tmp_path, monkeypatch, code, 10, failures, policy, [1])
    with pytest.raises(OSError, match=os.strerror(code)):
        writer.finish_bundle()  # the runner retries the bundle: no record is lost
    assert len(failures) == 2
    assert list(tmp_path.iterdir()) == []
