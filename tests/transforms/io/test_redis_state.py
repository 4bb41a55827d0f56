"""The redis:// sink's ``state`` mode (latest state of CDC changes) against the real Redis."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from pipelines.devtools.services.specs import ServiceSpec
from tests.support import run_sink
from transforms.cdc.change import Change
from transforms.io.base import SinkContext
from transforms.io.endpoint import EndpointError
from transforms.io.redis.sink import RedisSink
from transforms.io.registry import make_sink
from transforms.message import Message, Origin, Record

CUSTOMERS = "inventory.customers"
ORDERS = "inventory.orders"


def _seq(*parts: int) -> str:
    """The ``_sequence`` of a sequence, written out independently of the sink."""
    return ".".join(f"{part:020d}" for part in parts)


def _change(
    table: str,
    key: dict[str, Any],
    op: str,
    sequence: tuple[int, ...],
    row: dict[str, Any] | None = None,
    line: int = 0,
) -> Record:
    """A change record, as if parsed from line ``line`` of a file."""
    data = Change(table, key, op, row, sequence).to_dict()
    origin = Message(json.dumps(data).encode(), {}, Origin("file", path="/cdc.jsonl", line=line))
    return Record(data, origin)


def _upsert(key: int, sequence: tuple[int, ...], table: str = CUSTOMERS, **row: Any) -> Record:
    return _change(table, {"id": key}, "upsert", sequence, {"id": key, **row})


def _delete(key: int, sequence: tuple[int, ...], table: str = CUSTOMERS) -> Record:
    return _change(table, {"id": key}, "delete", sequence)


@pytest.fixture
def db(redis_server: ServiceSpec, unique_name: str) -> Iterator[redis.Redis]:
    """A client; the test's keys (under its unique prefix) are deleted afterwards."""
    client = redis.Redis.from_url(redis_server.endpoint, decode_responses=True)
    yield client
    for name in client.scan_iter(f"{unique_name}*"):
        client.delete(name)
    client.close()


def _sink(spec: ServiceSpec, prefix: str, query: str = "") -> RedisSink:
    uri = f"{spec.endpoint}?mode=state&key={prefix}:{{table}}:{{key}}{query}"
    sink = make_sink(uri, SinkContext(pipeline="test_pipeline"))
    assert isinstance(sink, RedisSink)
    return sink


def _state(db: redis.Redis, prefix: str) -> dict[str, dict[str, str]]:
    return {name: db.hgetall(name) for name in db.scan_iter(f"{prefix}:*")}  # type: ignore[misc]


def _key(prefix: str, key: int, table: str = CUSTOMERS) -> str:
    return f'{prefix}:{table}:{{"id":{key}}}'


# --------------------------------------------------------------------------------------------
# Convergence


def _history(seed: int) -> list[Record]:
    """Upserts and deletes of 10 keys in two tables, sequences increasing per key."""
    rng = random.Random(seed)
    changes = []
    position = 0
    for step in range(50):
        table = (CUSTOMERS, ORDERS)[step % 2]
        key = rng.randrange(5)
        position += rng.randrange(1, 5)
        sequence = (position // 7, position)
        if rng.random() < 0.25:
            changes.append(_delete(key, sequence, table))
        else:
            row = {"step": step, "price": step / 4, "tags": ["x", step], "note": None, "ok": True}
            changes.append(_upsert(key, sequence, table, **row))
    return changes


def _expected(prefix: str, changes: list[Record]) -> dict[str, dict[str, str]]:
    """Per key, the fields of the change with the greatest sequence (plain Python)."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for record in changes:
        data = record.data
        where = (data["table"], data["key"]["id"])
        if where not in latest or data["sequence"] > latest[where]["sequence"]:
            latest[where] = data
    state = {}
    for (table, key), data in latest.items():
        fields = {"_sequence": _seq(*data["sequence"])}
        if data["op"] == "delete":
            fields["_deleted"] = "1"
        else:
            row = data["row"]
            fields |= {
                "id": str(row["id"]),
                "step": str(row["step"]),
                "price": json.dumps(row["price"]),
                "tags": json.dumps(row["tags"], separators=(",", ":")),
                "ok": "true",
            }
        state[_key(prefix, key, table)] = fields
    return state


@pytest.mark.integration
def test_in_order_reversed_duplicated_and_replayed_batches_end_in_the_same_state(
    redis_server: ServiceSpec, db: redis.Redis, unique_name: str
) -> None:
    history = _history(seed=11)
    shuffled = history + history[5:25]
    random.Random(5).shuffle(shuffled)
    orders = {
        "ordered": [history],
        "reversed": [list(reversed(history))],
        "shuffled": [shuffled],
        "replayed": [history[:30], history[10:40], history],
    }
    for name, runs in orders.items():
        prefix = f"{unique_name}{name}"
        sink = _sink(redis_server, prefix, "&batch_size=4")
        for records in runs:
            assert run_sink(records, sink)["written"] == len(records)
        expected = _expected(prefix, history)
        assert any("_deleted" in fields for fields in expected.values())
        assert _state(db, prefix) == expected, name


@pytest.mark.integration
def test_a_delete_leaves_an_expiring_marker_that_older_upserts_cannot_overwrite(
    redis_server: ServiceSpec, db: redis.Redis, unique_name: str
) -> None:
    sink = _sink(redis_server, unique_name, "&delete_ttl=1h")
    key = _key(unique_name, 1)

    run_sink([_upsert(1, (1,), email="a@x", name="A"), _delete(1, (3,))], sink)
    marker = {"_sequence": _seq(3), "_deleted": "1"}
    assert db.hgetall(key) == marker
    assert 0 < db.ttl(key) <= 3600

    run_sink([_upsert(1, (2,), email="late@x"), _delete(1, (3,))], sink)  # older, and a duplicate
    assert db.hgetall(key) == marker

    # A newer upsert revives the key, without the marker's TTL; a longer sequence with the same
    # start is newer still, as in tuple order.
    run_sink([_upsert(1, (4,), email="b@x")], sink)
    assert db.hgetall(key) == {"_sequence": _seq(4), "id": "1", "email": "b@x"}
    assert db.ttl(key) == -1
    run_sink([_upsert(1, (4, 0), email="c@x")], sink)
    assert db.hgetall(key) == {"_sequence": _seq(4, 0), "id": "1", "email": "c@x"}

    # With ttl, live rows expire too; the marker keeps its own delete_ttl.
    expiring = _sink(redis_server, unique_name, "&ttl=60&delete_ttl=2h")
    run_sink([_upsert(2, (1,), v=1), _upsert(3, (1,)), _delete(3, (2,))], expiring)
    assert 0 < db.ttl(_key(unique_name, 2)) <= 60
    assert 3600 < db.ttl(_key(unique_name, 3)) <= 7200


# --------------------------------------------------------------------------------------------
# Failures


@pytest.mark.integration
def test_wrongtype_truncates_and_records_that_are_not_changes_are_dead_lettered(
    redis_server: ServiceSpec, db: redis.Redis, unique_name: str
) -> None:
    taken = _key(unique_name, 2)
    db.set(taken, "a string, not a hash")
    records = [
        _upsert(1, (1,), v="ok"),
        _change(CUSTOMERS, {"id": 2}, "upsert", (2,), {"id": 2}, line=2),
        _change(CUSTOMERS, {}, "truncate", (3,), line=3),
        _change(CUSTOMERS, {"id": 4}, "upsert", (4,), {"id": 4, "_sequence": "x"}, line=4),
        Record({"table": CUSTOMERS, "key": {"id": 5}, "op": "upsert", "row": {"id": 5}}),
    ]

    def check(dead_letters: list[dict[str, Any]]) -> None:
        by_line = {(letter["source"] or {}).get("line"): letter for letter in dead_letters}
        assert sorted(by_line, key=str) == [2, 3, 4, None], dead_letters
        assert by_line[2]["reason"] == "sink_rejected"
        assert "WRONGTYPE" in by_line[2]["error_message"]
        assert by_line[2]["payload_bytes"] == records[1].origin.payload  # type: ignore[union-attr]
        assert by_line[3]["reason"] == "cdc_truncate_unsupported"
        assert by_line[4]["reason"] == "sink_rejected"
        assert "['_sequence']" in by_line[4]["error_message"]
        assert by_line[None]["reason"] == "sink_rejected"
        assert "not a CDC change" in by_line[None]["error_message"]

    counters = run_sink(records, _sink(redis_server, unique_name), check)

    assert counters["written"] == 1
    assert db.hgetall(_key(unique_name, 1)) == {"_sequence": _seq(1), "id": "1", "v": "ok"}
    assert db.get(taken) == "a string, not a hash"
    assert db.ttl(taken) == -1
    assert db.exists(_key(unique_name, 4)) == 0


# --------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("mode=state&key=cdc:{table}", "must use {key}"),
        ("mode=state&key=cdc:{key}:{op}", "it uses ['op']"),
        ("mode=state&key=cdc:{key}&delete_ttl=soon", "delete_ttl: expected a duration"),
        ("mode=state&key=cdc:{key}&delete_ttl=500ms", "delete_ttl must be at least 1s"),
        ("mode=state&key=cdc:{key}&maxlen=3", "unknown parameters ['maxlen']"),
        ("mode=hash&key=k&delete_ttl=1d", "unknown parameters ['delete_ttl']"),
    ],
)
def test_bad_state_uris_are_refused_at_construction(query: str, message: str) -> None:
    with pytest.raises(EndpointError) as refused:
        make_sink(f"redis://127.0.0.1:6390/0?{query}", SinkContext(pipeline="p"))
    assert message in str(refused.value)


def test_delete_ttl_defaults_to_seven_days() -> None:
    sink = make_sink("redis://h/0?mode=state&key=cdc:{key}", SinkContext(pipeline="p"))
    assert isinstance(sink, RedisSink) and sink.mode == "state"
    assert sink._target.delete_ttl == 7 * 86400
    sink = make_sink(
        "redis://h/0?mode=state&key=c:{table}:{key}&delete_ttl=12h", SinkContext(pipeline="p")
    )
    assert isinstance(sink, RedisSink)
    assert sink._target.delete_ttl == 12 * 3600
