"""The Redis sink's fast paths give what the plain paths give.

`to_text`'s branches against JSON; plain commands (no ``ttl``) against the Lua scripts
(``ttl``) on a real server. These tests use their own key prefix and delete only their keys.
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

from pipelines.devtools.services.specs import ServiceSpec
from tests.support import run_sink
from transforms.blocks import Block
from transforms.dead_letter import error_record
from transforms.dead_letter_writer import dead_letter_sink
from transforms.io.base import SinkContext
from transforms.io.redis.sink import RedisSink
from transforms.io.redis.text import to_json, to_text
from transforms.io.registry import make_sink
from transforms.message import Message, Origin, Record

EVENT_TIME = 1_795_600_800.0


class _Level(enum.IntEnum):
    HIGH = 3


class _Ratio(float):
    pass


# --------------------------------------------------------------------------------------------
# Field text


def test_to_text_writes_numbers_as_json_does() -> None:
    numbers = [0, -1, 2**70, 3.0, -0.0, 2.5, 1e300, 1e-7, 0.1 + 0.2, float("nan"), float("inf"),
               -float("inf"), True, False, _Level.HIGH, _Ratio(1.5)]  # fmt: skip
    for number in numbers:
        assert to_text(number) == to_json(number), number


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


def _write(sink: RedisSink, records: list[Any]) -> list[Any]:
    """Drives the sink's DoFn over ``records`` in one bundle; returns its dead letters."""
    fn = sink.write_fn()
    fn.setup()
    fn.start_bundle()
    block = Block(data if isinstance(data, Record) else Record(data) for data in records)
    out = list(fn.process(block, MIN_TIMESTAMP, GlobalWindow()))
    out += fn.finish_bundle()
    fn.teardown()
    return out


ROUNDS = [
    # Round 1: every field set (HSET). Round 2: fields set and fields null (HSET and HDEL in
    # one script call), or new fields only (HSET).
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
@pytest.mark.parametrize("options", ["", "&ttl=60"])
def test_text_that_is_not_utf8_dead_letters_its_record_alone(
    redis_server: ServiceSpec, client: redis.Redis, unique_name: str, options: str
) -> None:
    sink = _sink(f"{redis_server.endpoint}?key={unique_name}:{{id}}&batch_size=10{options}")
    rows = [{"id": 1, "a": "x"}, {"id": 2, "a": "half a pair \ud800"}, {"id": 3, "a": "z"}]
    records = [
        Record(row, Message(b"line", {}, Origin("file", path="/in.jsonl", line=row["id"])))
        for row in rows
    ]

    dead_letters = [letter.value for letter in _write(sink, records)]

    assert [letter["source"]["line"] for letter in dead_letters] == [2]
    assert dead_letters[0]["reason"] == "sink_rejected"
    assert "cannot be encoded" in dead_letters[0]["error_message"]
    assert client.hgetall(f"{unique_name}:1") == {"id": "1", "a": "x"}
    assert client.hgetall(f"{unique_name}:3") == {"id": "3", "a": "z"}
    assert not client.exists(f"{unique_name}:2")


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
