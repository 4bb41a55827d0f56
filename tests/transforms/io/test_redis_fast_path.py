"""The Redis sink's fast paths give what the plain paths give.

Hand-packed commands (`transforms.io.redis_resp`) against redis-py's packer; the one-pass reply
reader against byte-by-byte reading (which takes the slow path everywhere); `to_text`'s
branches against JSON; plain commands (no ``ttl``) against the Lua scripts (``ttl``) on a real
server. These tests use their own key prefix and delete only their keys.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from redis._parsers import Encoder
from redis.connection import PythonRespSerializer

from pipelines.services import ServiceSpec
from tests.support import run_sink
from transforms.blocks import Block
from transforms.dead_letter import error_record
from transforms.dead_letter_writer import dead_letter_sink
from transforms.io.base import SinkContext
from transforms.io.redis import RedisSink
from transforms.io.redis_resp import bulk, fields, packed, read_replies
from transforms.io.redis_text import to_json, to_text
from transforms.io.registry import make_sink
from transforms.message import Message, Origin, Record

EVENT_TIME = 1_795_600_800.0


class _Level(enum.IntEnum):
    HIGH = 3


class _Ratio(float):
    pass


def _redis_py_pack(*args: Any) -> bytes:
    """How redis-py packs a command (its pure-Python serializer)."""
    encoder = Encoder("utf-8", "strict", False)
    return b"".join(PythonRespSerializer(6000, encoder.encode).pack(*args))


# --------------------------------------------------------------------------------------------
# Field text


def test_to_text_writes_numbers_as_json_does() -> None:
    numbers = [0, -1, 2**70, 3.0, -0.0, 2.5, 1e300, 1e-7, 0.1 + 0.2, float("nan"), float("inf"),
               -float("inf"), True, False, _Level.HIGH, _Ratio(1.5)]  # fmt: skip
    for number in numbers:
        assert to_text(number) == to_json(number), number


# --------------------------------------------------------------------------------------------
# Packing


@pytest.mark.parametrize(
    "args",
    [
        ("HSET", "k", "a", "1", "é", "naïve ☃", "empty", ""),
        ("SET", "k:{x}", '{"a":"line\\r\\nbreak"}', "EX", "30"),
        ("XADD", "s", "MAXLEN", "~", "1000", "*", "f", "v"),
        ("EVALSHA", "0" * 40, "1", "k", "0", "2"),
    ],
)
def test_packed_commands_are_what_redis_py_packs(args: tuple[str, ...]) -> None:
    assert packed([bulk(arg) for arg in args]) == _redis_py_pack(*args)


def test_field_pairs_pack_as_name_and_value_arguments() -> None:
    record = {"a": "x", "n": 3, "gone": None, "f": 2.5, "tags": ["t"], "é": "ü", "off": None}
    pairs, removed = fields(record, to_text)

    command = packed([bulk("HSET"), bulk("k")], pairs, removed)

    assert command == _redis_py_pack(
        "HSET", "k", "a", "x", "n", "3", "f", "2.5", "tags", '["t"]', "é", "ü", "gone", "off"
    )


# --------------------------------------------------------------------------------------------
# Reading replies


class _Socket:
    """Returns the given bytes ``chunk`` bytes at a time, then end of stream."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data, self._chunk = data, chunk

    def recv(self, size: int) -> bytes:
        piece, self._data = self._data[: min(size, self._chunk)], self._data[self._chunk :]
        return piece


class _Connection:
    def __init__(self, data: bytes, chunk: int) -> None:
        self._sock = _Socket(data, chunk)


def _read(data: bytes, counts: list[int], chunk: int) -> list[Any]:
    return read_replies(cast(redis.Connection, _Connection(data, chunk)), counts)


REPLIES = (
    b":1\r\n"  # HSET
    b"+OK\r\n"  # SET
    b"$9\r\n1-0\r\n\r\nab\r\n"  # a bulk string holding CRLF
    b"$-1\r\n"  # nil
    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:2\r\n:1\r\n"  # MULTI, HSET, HDEL, EXEC
    b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n-WRONGTYPE a\r\n-WRONGTYPE b\r\n"  # failed inside EXEC
    b"+OK\r\n-ERR unknown command 'NOPE'\r\n+QUEUED\r\n-EXECABORT Transaction discarded\r\n"
)
COUNTS = [1, 1, 1, 1, 1, 4, 4, 4]


def test_replies_read_in_one_pass_equal_replies_read_byte_by_byte() -> None:
    whole = _read(REPLIES, COUNTS, chunk=len(REPLIES))
    trickled = _read(REPLIES, COUNTS, chunk=1)  # never a whole transaction: the slow path

    assert [repr(reply) for reply in whole] == [repr(reply) for reply in trickled]
    assert whole[:4] == [1, b"OK", b"1-0\r\n\r\nab", None]
    assert isinstance(whole[4], redis.ResponseError) and "WRONGTYPE" in str(whole[4])
    assert whole[5] == [2, 1]
    assert isinstance(whole[6], redis.ResponseError) and str(whole[6]) == "WRONGTYPE a"
    assert isinstance(whole[7], redis.ResponseError) and "unknown command" in str(whole[7])


@pytest.mark.parametrize(
    ("data", "error", "text"),
    [
        (b"-LOADING Redis is loading the dataset in memory\r\n", redis.BusyLoadingError, "loading"),
        (b":1\r\n", redis.ConnectionError, "Connection closed by server"),  # one reply of two
        (b":1\r\n:2\r\n:3\r\n", redis.InvalidResponse, "came after the last reply"),
        (b"?what\r\n:1\r\n", redis.InvalidResponse, "Protocol Error"),
    ],
)
def test_replies_that_break_the_batch_raise(data: bytes, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        _read(data, [1, 1], chunk=3)


# --------------------------------------------------------------------------------------------
# Plain commands and scripts on the real server


@pytest.fixture
def client(redis_server: ServiceSpec, unique_name: str) -> Iterator[redis.Redis]:
    db = redis.Redis.from_url(redis_server.endpoint, decode_responses=True)
    yield db
    keys = list(db.scan_iter(match=f"{unique_name}:*", count=1000))
    if keys:
        db.unlink(*keys)
    db.close()


def _sink(uri: str) -> RedisSink:
    sink = make_sink(uri, SinkContext(pipeline="test_pipeline"))
    assert isinstance(sink, RedisSink)
    return sink


def _write(sink: RedisSink, records: list[dict[str, Any]]) -> list[Any]:
    """Drives the sink's DoFn over ``records`` in one bundle; returns its dead letters."""
    fn = sink.write_fn()
    fn.setup()
    fn.start_bundle()
    block = Block(Record(data) for data in records)
    out = list(fn.process(block, MIN_TIMESTAMP, GlobalWindow()))
    out += fn.finish_bundle()
    fn.teardown()
    return out


ROUNDS = [
    # Round 1: every field set (HSET). Round 2: fields set and fields null (HSET and HDEL in
    # MULTI/EXEC), or new fields only (HSET).
    [
        {
            "id": i,
            "s": f"é{i}",
            "n": i,
            "f": i / 3,
            "ok": i % 2 == 0,
            "tags": {"b": [i], "a": None},
            "raw": b"\x00\xff",
            "gone": "soon",
        }
        for i in range(12)
    ],
    [{"id": i, "s": None, "f": None, "gone": None, "new": i * 1.5} for i in range(0, 12, 3)]
    + [{"id": i, "s": None, "n": None, "f": None, "ok": None} for i in range(1, 12, 3)]
    + [{"id": i, "extra": "x"} for i in range(2, 12, 3)],
]


@pytest.mark.integration
def test_hash_plain_commands_leave_what_the_script_leaves(
    redis_server: ServiceSpec, client: redis.Redis, unique_name: str
) -> None:
    plain = _sink(f"{redis_server.endpoint}?key={unique_name}:plain:{{id}}&batch_size=5")
    scripted = _sink(f"{redis_server.endpoint}?key={unique_name}:lua:{{id}}&batch_size=5&ttl=600")

    for records in ROUNDS:
        assert _write(plain, records) == []
        assert _write(scripted, records) == []

    for i in range(12):
        stored = client.hgetall(f"{unique_name}:plain:{i}")
        assert stored == client.hgetall(f"{unique_name}:lua:{i}")
        assert stored["id"] == str(i)
    assert client.hgetall(f"{unique_name}:plain:3") == {
        "id": "3", "n": "3", "ok": "false", "tags": '{"a":null,"b":[3]}', "raw": "AP8=",
        "new": "4.5",
    }  # fmt: skip
    assert client.hgetall(f"{unique_name}:plain:4") == {
        "id": "4", "tags": '{"a":null,"b":[4]}', "raw": "AP8=", "gone": "soon"
    }  # fmt: skip
    assert client.ttl(f"{unique_name}:plain:0") == -1
    assert 0 < client.ttl(f"{unique_name}:lua:0") <= 600


@pytest.mark.integration
def test_a_record_of_null_fields_only_removes_them_as_the_script_does(
    redis_server: ServiceSpec, client: redis.Redis, unique_name: str
) -> None:
    for name, ttl in (("plain", ""), ("lua", "&ttl=600")):
        sink = _sink(f"{redis_server.endpoint}?key={unique_name}:{name}{ttl}")
        assert _write(sink, [{"a": 1, "b": 2, "c": 3}]) == []
        assert _write(sink, [{"a": None, "c": None}]) == []  # plain: HDEL alone
    assert client.hgetall(f"{unique_name}:plain") == client.hgetall(f"{unique_name}:lua")
    assert client.hgetall(f"{unique_name}:plain") == {"b": "2"}


@pytest.mark.integration
def test_zset_and_stream_plain_commands_write_what_the_scripts_write(
    redis_server: ServiceSpec, client: redis.Redis, unique_name: str
) -> None:
    records = [{"user": f"u{i}", "amount": i * 2.5, "note": None} for i in range(7)]
    base, prefix = redis_server.endpoint, unique_name
    for name, ttl in (("plain", ""), ("lua", "&ttl=600")):
        zset = _sink(f"{base}?mode=zset&key={prefix}:{name}:z&score=amount&batch_size=3{ttl}")
        stream = _sink(f"{base}?mode=stream&key={prefix}:{name}:s&maxlen=5&batch_size=3{ttl}")
        assert _write(zset, records) == [] and _write(stream, records) == []

    assert client.zrange(f"{prefix}:plain:z", 0, -1, withscores=True) == client.zrange(
        f"{prefix}:lua:z", 0, -1, withscores=True
    )
    entries = {
        name: [fields for _, fields in cast(list[Any], client.xrange(f"{prefix}:{name}:s"))]
        for name in ("plain", "lua")
    }
    assert entries["plain"] == entries["lua"]
    assert entries["plain"][-1] == {"user": "u6", "amount": "15.0"}
    assert client.ttl(f"{prefix}:plain:s") == -1 and client.ttl(f"{prefix}:lua:s") > 0


@pytest.mark.integration
@pytest.mark.parametrize("record", [{"v": "new"}, {"v": "new", "gone": None}, {"gone": None}])
def test_a_wrongtype_key_is_dead_lettered_by_the_plain_commands_too(
    redis_server: ServiceSpec, client: redis.Redis, unique_name: str, record: dict[str, Any]
) -> None:
    client.set(f"{unique_name}:2", "a string, not a hash")
    sink = _sink(f"{redis_server.endpoint}?key={unique_name}:{{id}}")
    records = []
    for i in (1, 2, 3):
        data = {"id": i, **record}
        payload = json.dumps(data).encode()
        origin = Origin("file", path="/in.jsonl", line=i)
        records.append(Record(data, Message(payload, {}, origin), EVENT_TIME))

    def check(dead_letters: list[dict[str, Any]]) -> None:
        assert [letter["source"]["line"] for letter in dead_letters] == [2]
        assert dead_letters[0]["reason"] == "sink_rejected"
        assert "WRONGTYPE" in dead_letters[0]["error_message"]

    assert run_sink(records, sink, check)["written"] == 2
    assert client.get(f"{unique_name}:2") == "a string, not a hash"
    assert client.exists(f"{unique_name}:1", f"{unique_name}:3") == 2


@pytest.mark.integration
def test_a_dead_letter_sink_writes_the_same_hashes_with_commands_or_scripts(
    redis_server: ServiceSpec, client: redis.Redis, unique_name: str
) -> None:
    origin = Origin("file", path="/in.jsonl", line=7)
    letters = [
        error_record(
            Record({"id": i}, Message(b'{"id": %d}' % i, {"k": "v"}, origin)),
            pipeline="test_pipeline",
            step="parse",
            reason="invalid_json",
            error_type="ValueError",
            error_message=f"bad {i}",
        )
        for i in range(3)
    ]
    for name, ttl in (("plain", ""), ("lua", "&ttl=600")):
        uri = f"{redis_server.endpoint}?key={unique_name}:{name}:{{error_message}}{ttl}"
        sink = dead_letter_sink(uri, "test_pipeline")
        assert isinstance(sink, RedisSink)
        assert _write(sink, letters) == []

    for i in range(3):
        stored = client.hgetall(f"{unique_name}:plain:bad {i}")
        assert stored == client.hgetall(f"{unique_name}:lua:bad {i}")
        assert stored["reason"] == "invalid_json"
