"""Tests of the enrich family: one contract, side input refresh, Redis lookups, a CDC table.

Every step takes blocks of records: the tests feed them in blocks and read the records back.

Redis tests use the real server with keys under a unique prefix. Timeouts are real: a small TCP
relay in front of the real Redis forwards traffic until it is told to hold it.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
import redis
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from tests.support import COLLECTED, Collect
from transforms.blocks import Block
from transforms.cdc.change import Change
from transforms.enrich.base import EnrichSettings, enrich_from_uri, key_function, reference_key
from transforms.enrich.cdc_table import ChangelogEnrich
from transforms.enrich.loaders import Table
from transforms.enrich.redis_lookup import RedisLookup, TtlCache, from_text
from transforms.enrich.side_input import SideInputEnrich
from transforms.event_time import format_timestamp
from transforms.io.bigquery.client import make_client
from transforms.io.endpoint import EndpointError
from transforms.io.redis.text import KeyTemplate, to_text
from transforms.io.registry import LOOKUPS, REFERENCES
from transforms.message import Message, Origin, Record

T0 = 1_764_064_800.0  # 2025-11-25T10:00:00Z, a whole minute in the past
PIPELINE = "enrich_test"
BQ_PROJECT = "local-project"

PROFILES = {
    "c1": {"risk_score": 0.9, "typical_amount": 40.0, "tier": "gold", "tags": ["a"]},
    "c2": {"risk_score": 0.1, "typical_amount": 500, "tier": "silver", "tags": []},
}


pytestmark = pytest.mark.usefixtures("live_direct_runner")


def txn(n: int, customer: str | None, offset: float | None = 0.0) -> Record:
    """Transaction ``n`` at ``T0 + offset`` (no event time when ``offset`` is None)."""
    data: dict[str, Any] = {"txn": n, "amount": 10.0 * n}
    if customer is not None:
        data["customer_id"] = customer
    payload = json.dumps(data).encode()
    message = Message(payload, {"src": "test"}, Origin("file", path="/in.jsonl", line=n))
    return Record(data, message, None if offset is None else T0 + offset)


def blocks(records: list[Record], size: int = 3) -> list[Block]:
    """The records in blocks of ``size``, as a stream's bundles or a file's chunks give them."""
    return [Block(records[start : start + size]) for start in range(0, len(records), size)]


TXNS = [txn(1, "c1"), txn(2, "c2"), txn(3, "c404"), txn(4, None), txn(5, "c1")]


class Result:
    def __init__(self, records: list[Record], errors: list[dict], counters: dict[str, int]):
        self.records = records
        self.errors = errors
        self.counters = counters

    def by_txn(self) -> dict[int, dict[str, Any]]:
        return {r.data["txn"]: r.data for r in self.records}


def run(build: Any, streaming: bool = False) -> Result:
    tag = uuid.uuid4().hex
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=streaming))
    enriched, errors = build(pipeline)
    records = enriched | "Records of the blocks" >> beam.FlatMap(list)
    _ = records | "Records" >> beam.ParDo(Collect(tag + "records"))
    _ = errors | "Errors" >> beam.ParDo(Collect(tag + "errors"))
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = defaultdict(int)
    for counter in result.metrics().query(MetricsFilter().with_namespace("pipelines"))["counters"]:
        counters[counter.key.metric.name] += counter.committed or counter.attempted or 0
    return Result(
        COLLECTED.pop(tag + "records", []), COLLECTED.pop(tag + "errors", []), dict(counters)
    )


def enrich(transform: beam.PTransform, records: list[Any] = TXNS, size: int = 3) -> Result:
    """Runs ``transform`` on ``records`` in blocks of ``size`` (or on timestamped blocks)."""
    items = records if isinstance(records[0], TimestampedValue) else blocks(records, size)
    return run(lambda p: p | beam.Create(items, reshuffle=False) | transform)


def settings(**kwargs: Any) -> EnrichSettings:
    return EnrichSettings(PIPELINE, **({"into": "profile"} | kwargs))


def check_contract(result: Result, missing: str, reason: str = "missing_reference") -> None:
    """The three policies on TXNS, where 3 (c404) and 4 (no customer_id) have no profile."""
    got = result.by_txn()
    assert got[1]["profile"] == PROFILES["c1"] and got[5]["profile"] == PROFILES["c1"]
    assert got[2]["profile"] == PROFILES["c2"]
    assert got[2]["customer_id"] == "c2" and got[2]["amount"] == 20.0
    assert all(r.origin is not None and r.origin.origin.line == r.data["txn"]
               for r in result.records)  # fmt: skip
    assert {r.event_time for r in result.records} == {T0}
    if missing == "pass":
        assert sorted(got) == [1, 2, 3, 4, 5]
        assert got[3]["profile"] is None and got[4]["profile"] is None
        assert result.errors == [] and "dropped" not in result.counters
    elif missing == "drop":
        assert sorted(got) == [1, 2, 5]
        assert result.counters["dropped.missing_reference"] == 2 and result.errors == []
    else:
        assert sorted(got) == [1, 2, 5]
        assert sorted((e["reason"], e["step"], e["source"]["line"]) for e in result.errors) == [
            (reason, "enrich", 3),
            (reason, "enrich", 4),
        ]
        assert json.loads(result.errors[0]["payload_bytes"])["txn"] in (3, 4)
        assert {e["event_timestamp"] for e in result.errors} == {format_timestamp(T0)}
        assert "dropped" not in result.counters


# ---------------------------------------------------------------- the contract


def test_settings_merge_nested_prefixed_or_flat() -> None:
    data = {"customer_id": "c1", "tier": "mine"}
    row = {"tier": "gold", "risk_score": 0.9}
    assert settings().merge(data, row) == {**data, "profile": row}
    assert settings(fields=("tier",)).merge(data, row)["profile"] == {"tier": "gold"}
    prefixed = EnrichSettings(PIPELINE, into=None, prefix="p_", fields=("tier", "x"))
    assert prefixed.merge(data, row) == {**data, "p_tier": "gold", "p_x": None}
    assert prefixed.merge(data, None) == {**data, "p_tier": None, "p_x": None}
    flat = EnrichSettings(PIPELINE, into=None, prefix="", missing="drop")
    assert flat.merge(data, row) == {"customer_id": "c1", "tier": "mine", "risk_score": 0.9}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"into": None}, "either"),
        ({"prefix": "p_"}, "either"),
        ({"missing": "ignore"}, "missing"),
        ({"unavailable": "retry"}, "unavailable"),
        ({"into": None, "prefix": "p_"}, "declare the reference fields"),
    ],
)
def test_settings_are_checked_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnrichSettings(PIPELINE, **kwargs)


def test_reference_uris_are_checked(tmp_path: Path) -> None:
    with pytest.raises(EndpointError, match="key=<template>"):
        enrich_from_uri("redis://127.0.0.1:6390/0", settings())
    with pytest.raises(EndpointError, match="mode"):
        enrich_from_uri("redis://127.0.0.1:6390/0?key={a}&mode=scan", settings())
    with pytest.raises(EndpointError, match="no reference for scheme"):
        enrich_from_uri("pubsub://projects/p/topics/t?key={a}", settings())
    with pytest.raises(EndpointError, match="unknown parameters"):
        enrich_from_uri("redis://127.0.0.1:6390/0?key={a}&ttl=3", settings())
    with pytest.raises(EndpointError, match="no file matches"):
        enrich_from_uri(f"file://{tmp_path}/none.jsonl?key={{a}}", settings())
    with pytest.raises(EndpointError, match="cache_ttl"):
        enrich_from_uri("redis://127.0.0.1:6390/0?key={a}&cache_ttl=soon", settings())
    with pytest.raises(EndpointError, match="no per-record lookup for scheme 'file'"):
        enrich_from_uri(f"file://{tmp_path}/none.jsonl?key={{a}}&mode=lookup", settings())


def test_reference_schemes_are_the_registry_s() -> None:
    with pytest.raises(EndpointError) as error:
        enrich_from_uri("pubsub://projects/p/topics/t?key={a}", settings())
    known = str(error.value).split("known: ")[1].split(", ")
    assert known == sorted(f"{scheme}://" for scheme in {*LOOKUPS, *REFERENCES})


def test_values_read_back_as_the_redis_sink_writes_them() -> None:
    cases = [(3, 3), (0.5, 0.5), (True, True), (None, None), ({"a": [1, "x"]}, {"a": [1, "x"]}),
             ("gold", "gold"), ("007", "007"), ('"quoted"', '"quoted"'),
             ("1e3", 1000.0)]  # text that is a JSON number comes back a number  # fmt: skip
    for value, expected in cases:
        assert from_text(to_text(value)) == expected


def test_ttl_cache_expires_and_evicts_the_least_recently_used() -> None:
    now = [0.0]
    cache = TtlCache(ttl=10, size=2, clock=lambda: now[0])
    cache.put("a", {"x": 1})
    cache.put("b", None)  # a known absence is cached too
    assert cache.get("a") == (True, {"x": 1}) and cache.get("b") == (True, None)
    cache.get("a")
    cache.put("c", 3)  # b was used least recently
    assert cache.get("b") == (False, None) and cache.get("a")[0] and cache.get("c")[0]
    now[0] = 10.0
    assert cache.get("a") == (False, None)
    off = TtlCache(ttl=0, size=2)
    off.put("a", 1)
    assert off.get("a") == (False, None)


class Text(str):
    """A str subclass, as some decoders produce: rendered as its text."""


KEY_VALUES: list[Any] = [
    "c1", "", "007", Text("c1"), 7, -3, 10**30, 2.5, 1e300, math.nan, math.inf, 0.0, True,
    False, None, {"a": [1, "x"]}, [1, 2], b"hi", "ü",
]  # fmt: skip


def outcome(function: Any, *args: Any) -> tuple[str, Any]:
    """What ``function(*args)`` gives: its value, or the type of what it raised."""
    try:
        return "value", function(*args)
    except Exception as error:  # noqa: BLE001 - both must raise alike
        return "raised", type(error)


TEMPLATES = ["{id}", "customer:{id}", "{id}:x", "{id}:{region}", "{region}{id}"]


@pytest.mark.parametrize("text", TEMPLATES)
def test_key_function_renders_as_the_template(text: str) -> None:
    """`key_function` (a bare field without the template's loop) keys as `reference_key`."""
    template = KeyTemplate.parse(text)
    fast = key_function(template)
    datas: list[dict[str, Any]] = [{}, {"region": "eu"}]
    datas += [{"id": value} for value in KEY_VALUES]
    datas += [{"id": v, "region": region} for v in KEY_VALUES for region in ("eu", 3, None)]
    for data in datas:
        assert outcome(fast, data) == outcome(reference_key, template, data), data


# ---------------------------------------------------------------- side input


def write_profiles(path: Path) -> None:
    rows = [{"customer_id": key, **row} for key, row in PROFILES.items()]
    lines = [json.dumps(row) for row in rows] + ["not json", '{"no_key": 1}', ""]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("missing", ["pass", "drop", "dead_letter"])
def test_file_side_input_with_each_missing_policy(tmp_path: Path, missing: str) -> None:
    path = tmp_path / "profiles.jsonl"
    write_profiles(path)
    transform = enrich_from_uri(
        f"file://{path}?key={{customer_id}}",
        settings(fields=tuple(PROFILES["c1"]), missing=missing),
    )
    result = enrich(transform)
    for row in PROFILES.values():  # the file rows also hold customer_id: fields keep the rest
        assert set(row) == set(PROFILES["c1"])
    check_contract(result, missing)
    assert result.counters["enrich_rows_skipped"] == 2


@pytest.mark.integration
def test_bigquery_table_side_input(bigquery_emulator: Any, unique_name: str) -> None:
    client = make_client(BQ_PROJECT, bigquery_emulator.endpoint)
    table = f"{BQ_PROJECT}.{unique_name}.profiles"
    try:
        client.create_dataset(unique_name, timeout=30)
        columns = "customer_id STRING, risk_score FLOAT64, typical_amount FLOAT64, tier STRING"
        client.query(f"CREATE TABLE `{table}` ({columns})").result(timeout=30)
        rows = [{"customer_id": k} | {f: v for f, v in row.items() if f != "tags"}
                for k, row in PROFILES.items()]  # fmt: skip
        assert client.insert_rows_json(table, rows, timeout=30) == []
        uri = (
            f"bigquery://{BQ_PROJECT}:{unique_name}.profiles?key={{customer_id}}"
            f"&endpoint={bigquery_emulator.endpoint}"
        )
        fields = ("risk_score", "typical_amount", "tier", "tags")
        result = enrich(enrich_from_uri(uri, settings(fields=fields, missing="dead_letter")))
    finally:
        client.delete_dataset(unique_name, delete_contents=True, not_found_ok=True, timeout=30)
        client.close()
    # The table has no tags column: the declared field comes back as None.
    got = result.by_txn()
    assert got[1]["profile"] == {**PROFILES["c1"], "tags": None}
    assert got[2]["profile"] == {**PROFILES["c2"], "typical_amount": 500.0, "tags": None}
    assert sorted(e["source"]["line"] for e in result.errors) == [3, 4]


class VersionedLoader:
    """A table whose tier says which refresh loaded it (minute since T0)."""

    def __call__(self, at: float) -> Table:
        return {"c1": {"tier": f"v{int((at - T0) // 60)}", "loaded_at": at}}


def test_a_later_refresh_is_seen_by_later_records() -> None:
    # A block holds records of several refreshes; 7 has no event time: its block's counts.
    first = [txn(1, "c1", 10), txn(2, "c1", 59), txn(3, "c1", 60), txn(7, "c1", None)]
    second = [txn(4, "c1", 130), txn(5, "c2", 131), txn(6, "c1", 200)]
    records = [TimestampedValue(Block(first), T0 + 65), TimestampedValue(Block(second), T0 + 130)]
    transform = SideInputEnrich(
        VersionedLoader(),
        KeyTemplate.parse("{customer_id}"),
        settings(missing="dead_letter"),
        refresh=60,
        start=T0,
        stop=T0 + 180,  # a bounded impulse: refreshes at T0, T0+60, T0+120
    )
    result = enrich(transform, records)
    got = result.by_txn()
    assert {n: row["profile"]["tier"] for n, row in got.items()} == {
        1: "v0",
        2: "v0",
        3: "v1",
        4: "v2",
        7: "v1",
    }
    assert got[3]["profile"]["loaded_at"] == T0 + 60
    assert got[4]["profile"]["loaded_at"] == T0 + 120
    reasons = sorted((e["source"]["line"], e["reason"]) for e in result.errors)
    # c2 is not in the table; nothing was loaded for T0+200, after the last refresh.
    assert reasons == [(5, "missing_reference"), (6, "enrich_unavailable")]


# ---------------------------------------------------------------- Redis


@pytest.fixture
def profiles(redis_server: Any, unique_name: str) -> Iterator[str]:
    """Profiles c1 and c2 as hashes ``<unique>:cust:<id>``; yields the key template."""
    client = redis.Redis.from_url(redis_server.endpoint)
    for customer, row in PROFILES.items():
        client.hset(
            f"{unique_name}:cust:{customer}", mapping={k: to_text(v) for k, v in row.items()}
        )
    client.set(f"{unique_name}:cust:c404", "a string, not a hash")
    yield f"{unique_name}:cust:{{customer_id}}"
    client.delete(*client.keys(f"{unique_name}:*"))


@pytest.mark.integration
@pytest.mark.parametrize("missing", ["pass", "drop", "dead_letter"])
def test_redis_lookup_hits_and_misses_with_each_policy(
    redis_server: Any, profiles: str, missing: str
) -> None:
    uri = f"{redis_server.endpoint}?key={profiles}&batch_size=2"
    transform = enrich_from_uri(uri, settings(missing=missing))
    assert isinstance(transform, RedisLookup)
    check_contract(enrich(transform), missing)


@pytest.mark.integration
def test_redis_snapshot_side_input_loads_every_matching_hash(
    redis_server: Any, profiles: str
) -> None:
    uri = f"{redis_server.endpoint}?key={profiles}&mode=snapshot"
    transform = enrich_from_uri(uri, settings(missing="dead_letter"))
    assert isinstance(transform, SideInputEnrich)
    check_contract(enrich(transform), "dead_letter")


class Relay:
    """A TCP relay to the real Redis that forwards until `hold` is set, then goes silent."""

    def __init__(self, port: int) -> None:
        self.hold = threading.Event()
        self.connections = 0
        self._upstream = port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.hold.is_set():
                    target.sendall(data)
        except OSError:
            pass
        finally:
            source.close()
            target.close()

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def relay(redis_server: Any) -> Iterator[Relay]:
    relay = Relay(redis_server.port)
    yield relay
    relay.close()


@pytest.mark.integration
def test_redis_lookup_through_the_relay_hits_until_held(relay: Relay, profiles: str) -> None:
    uri = f"redis://127.0.0.1:{relay.port}/0?key={profiles}&timeout=0.3s&attempts=1"
    check_contract(enrich(enrich_from_uri(uri, settings(missing="pass"))), "pass")


@pytest.mark.integration
def test_redis_timeouts_are_dead_lettered_as_unavailable(relay: Relay, profiles: str) -> None:
    relay.hold.set()
    uri = f"redis://127.0.0.1:{relay.port}/0?key={profiles}&timeout=0.3s&attempts=2"
    result = enrich(enrich_from_uri(uri, settings(missing="pass")), TXNS, size=len(TXNS))
    # The keyless record needs no lookup: the missing policy (pass) settles it.
    assert [r.data["txn"] for r in result.records] == [4]
    assert result.records[0].data["profile"] is None
    assert sorted(e["source"]["line"] for e in result.errors) == [1, 2, 3, 5]
    assert {e["reason"] for e in result.errors} == {"enrich_unavailable"}
    assert "after 2 attempts" in result.errors[0]["error_message"]
    # One block, one round trip, sent twice: the second attempt came on a new connection.
    assert relay.connections == 2


@pytest.mark.integration
@pytest.mark.parametrize("missing", ["pass", "drop", "dead_letter"])
def test_redis_timeouts_can_follow_the_missing_policy(
    relay: Relay, profiles: str, missing: str
) -> None:
    relay.hold.set()
    uri = f"redis://127.0.0.1:{relay.port}/0?key={profiles}&timeout=0.3s&attempts=1"
    result = enrich(enrich_from_uri(uri, settings(missing=missing, unavailable="missing")))
    if missing == "pass":
        assert sorted(result.by_txn()) == [1, 2, 3, 4, 5]
        assert all(row["profile"] is None for row in result.by_txn().values())
    elif missing == "drop":
        assert result.records == [] and result.counters["dropped.missing_reference"] == 5
    else:
        assert len(result.errors) == 5
        assert {e["reason"] for e in result.errors} == {"missing_reference"}
        assert any("no reply" in e["error_message"] for e in result.errors)


# ---------------------------------------------------------------- CDC table


def change(
    customer: str, op: str, sequence: int, table: str = "crm.customers", **row: Any
) -> Record:
    data = Change(
        table=table,
        key={"customer_id": customer},
        op=op,
        row={"customer_id": customer, **row} if op == "upsert" else None,
        sequence=(sequence,),
    ).to_dict()
    return Record(data, None, T0)


TRUNCATE = {"table": "crm.customers", "key": {}, "op": "truncate", "row": None, "sequence": [9]}


def test_changelog_table_keeps_the_latest_row_per_key() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(T0)
        .add_elements(
            [
                (
                    "c",
                    Block(
                        [
                            change("c1", "upsert", 1, tier="silver"),
                            change("c2", "upsert", 1, tier="gold"),
                        ]
                    ),
                )
            ]
        )  # fmt: skip
        .add_elements([("r", Block([txn(1, "c1"), txn(2, "c2"), txn(3, "c3"), txn(4, None)]))])
        .add_elements(
            [
                (
                    "c",
                    Block(
                        [
                            change("c1", "upsert", 3, tier="platinum"),
                            change("c1", "upsert", 2, tier="stale"),  # older than 3: skipped
                            change("c2", "delete", 2),
                            Record({"table": "crm.customers"}),
                            Record(TRUNCATE),
                            change("c1", "upsert", 9, table="crm.other", tier="x"),
                        ]
                    ),
                )
            ]
        )  # fmt: skip
        .add_elements([("r", Block([txn(5, "c1"), txn(6, "c2")]))])
        .advance_watermark_to_infinity()
    )

    def build(pipeline: beam.Pipeline) -> Any:
        both = pipeline | stream
        records = both | "R" >> beam.FlatMap(lambda e: [e[1]] if e[0] == "r" else [])
        changes = both | "C" >> beam.FlatMap(lambda e: [e[1]] if e[0] == "c" else [])
        table = ChangelogEnrich(KeyTemplate.parse("{customer_id}"), settings(), "crm.customers")
        return (records, changes) | table

    result = run(build, streaming=True)
    tiers = {n: (row["profile"] or {}).get("tier") for n, row in result.by_txn().items()}
    assert tiers == {1: "silver", 2: "gold", 3: None, 4: None, 5: "platinum", 6: None}
    assert result.counters["enrich_changes_stale"] == 1
    assert result.counters["enrich_changes_skipped"] == 1  # crm.other
    assert sorted(e["reason"] for e in result.errors) == ["bad_change", "bad_change"]
    assert any("truncate" in e["error_message"] for e in result.errors)
