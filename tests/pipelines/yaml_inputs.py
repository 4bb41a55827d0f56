"""The inputs of the Beam YAML provider's tests: events, transactions, changes, dead letters
read back, and the hostile records (and the pipeline) of the hostile-input test."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from pipelines.yaml_provider import PROVIDERS
from transforms.dead_letter import REPLAY_COUNT, REPLAY_OF, error_record
from transforms.event_time import format_timestamp
from transforms.message import Message, Origin

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "cdc"
T0 = 1_764_064_800  # 2025-11-25T10:00:00Z


def events() -> list[bytes]:
    """API events of three users over two hours, and lines that fail parse or the schema."""
    offsets = {"u1": [0, 50, 130, 4000], "u2": [20, 70], "u3": [3700, 3710, 3800]}
    lines = []
    for user, times in offsets.items():
        for n, offset in enumerate(times):
            event = {
                "event_id": f"{user}-{n}", "ts": format_timestamp(T0 + offset), "user_id": user,
                "event_type": f"t{n}", "endpoint": f"/e{n % 2}", "status_code": 200 + 150 * n,
                "latency_ms": 10.0 * (n + 1), "amount": n + 0.5, "country": "DE",
            }  # fmt: skip
            lines.append(json.dumps(event).encode())
    keyless = {"event_id": "nokey", "ts": format_timestamp(T0 + 10), "user_id": "u1"}
    bad_time = b'{"event_id": "x", "ts": "not a time", "user_id": "u9"}'
    return lines + [json.dumps(keyless).encode(), b"{broken", bad_time]


def transactions() -> list[bytes]:
    """Transactions: a duplicate, a risky customer, one without a profile, a list as key."""
    rows = [("t1", "c1", 10.0, 0), ("t2", "c1", 500.0, 60), ("t2", "c1", 500.0, 61),
            ("t3", "c2", 20.0, 90), ("t4", "c9", 5.0, 100), ("t5", ["c1"], 1.0, 120)]  # fmt: skip
    lines = [
        json.dumps({"transaction_id": t, "customer_id": c, "amount": a,
                    "ts": format_timestamp(T0 + s)}).encode()
        for t, c, a, s in rows
    ]  # fmt: skip
    return lines + [b"[1, 2]"]


def changes() -> list[bytes]:
    """Debezium and Datastream fixtures (a duplicate, a tombstone, a message) and a bad line."""
    names = ["debezium_postgres_snapshot_read", "debezium_postgres_create",
             "debezium_postgres_update_schemas", "debezium_postgres_create",
             "debezium_postgres_delete", "debezium_postgres_message",
             "datastream_postgres_insert", "debezium_postgres_truncate"]  # fmt: skip
    lines = [json.dumps(json.loads((FIXTURES / f"{n}.json").read_text())["value"]).encode()
             for n in names]  # fmt: skip
    return lines[:5] + [b""] + lines[5:] + [b"{not json"]


def dead_letters_read_back() -> list[bytes]:
    """Dead letters as a file sink writes them: replayed, parked (replayed enough, cut),
    filtered out by reason; and lines that are no dead letters."""
    origin = Origin("kafka", topic="orders", partition=0, offset=7, key="c1")
    messages = [
        (Message(b'{"event_id": "e1", "amount": "x"}', {"k": "v"}, origin), "schema"),
        (Message(b"\xff{not json", {}, Origin("file", path="/in.jsonl", line=3)), "invalid_json"),
        (Message(b'{"event_id": "e2"}', {REPLAY_COUNT: "3", REPLAY_OF: "f" * 32}, origin),
         "schema"),
        (Message(b'{"event_id": "e3"}', {}, origin), "schema"),
        (Message(b'{"event_id": "e4"}', {}, origin), "udf"),
    ]  # fmt: skip
    letters = [
        error_record(message, pipeline="events_to_bigquery", step="parse", reason=reason,
                     error_type="SchemaViolation", error_message="no good")
        for message, reason in messages
    ]  # fmt: skip
    letters[3]["payload_truncated"] = True
    lines = [msgspec.json.encode(letter) for letter in letters]
    return lines + [b'{"pipeline": "x"}', b"not json at all"]


PROFILES = [
    {"customer_id": "c1", "typical_amount": 40.0, "risk_score": 0.1},
    {"customer_id": "c2", "typical_amount": 900.0, "risk_score": 0.9},
]


# Hostile records through the steps, from a file: every line must come out as a row (or in an
# aggregate's count) or as a dead letter with its bytes; no bundle may fail.
HOSTILE = """
providers: [{include: "PROVIDERS"}]
pipeline:
  transforms:
    - {type: ReadFromEndpoint, name: Events, config: {uri: "file://FOLDER/hostile_events.jsonl"}}
    - type: Parse
      name: ParseEvents
      input: Events
      config: {event_time_field: ts, keep_origin: true, error_handling: {output: errors}}
    - type: WindowedAggregate
      input: ParseEvents
      config:
        spec:
          window: {type: tumbling, size: 60s}
          group_by: [endpoint]
          aggregates: {n: count(), total: sum(amount), slowest: max(latency_ms)}
        error_handling: {output: errors}
    - type: Enrich
      input: ParseEvents
      config:
        reference: "file://FOLDER/profiles.jsonl?key={customer_id}"
        error_handling: {output: errors}
    - {type: ReadFromEndpoint, name: Changes, config: {uri: "file://FOLDER/hostile_changes.jsonl"}}
    - type: Parse
      name: ParseChanges
      input: Changes
      config: {keep_origin: true, error_handling: {output: errors}}
    - type: ApplyChanges
      input: ParseChanges
      config: {key_columns: "inventory.customers=id", error_handling: {output: errors}}
"""
HOSTILE_OUTPUTS = {"WindowedAggregate": "aggregate", "Enrich": "enrich",
                   "ApplyChanges": "changes"}  # fmt: skip
HOSTILE_ERRORS = ("ParseEvents", "ParseChanges", "WindowedAggregate", "Enrich", "ApplyChanges")


def hostile_pipeline(folder: Path) -> str:
    """Writes the hostile inputs into ``folder``; returns the pipeline writing under it."""
    at = format_timestamp(T0)
    good = [
        {"ts": at, "endpoint": "/a", "customer_id": "c1", "amount": 2.5, "latency_ms": 10},
        {"ts": T0 + 65, "endpoint": "/b", "customer_id": "c9", "amount": 1, "latency_ms": 20},
    ]
    hostile = [
        {"ts": at, "endpoint": ["/a"], "customer_id": {"id": 1}, "amount": 1},  # wrong types
        {"ts": at, "endpoint": "/a", "customer_id": "c1", "amount": "lots", "latency_ms": True},
        {"endpoint": "/a", "customer_id": "c1"}, {"ts": at, "amount": 1},  # fields missing
        {"ts": at, "endpoint": "/a", "customer_id": "c1", "amount": int("9" * 400)},
        {"ts": "0001-01-01T00:00:00Z", "endpoint": "/a"}, {"ts": 1e300, "endpoint": "/a"},
        {"ts": at, "endpoint": "x" * 100_000, "customer_id": "c1"},  # huge but within limits
        {"ts": at, "endpoint": "/a", "deep": json.loads("[" * 400 + "]" * 400)},
    ]  # fmt: skip
    raw = [b"\xff\xfe\xfd", b'{"ts": 1, "endpoint": "/\xff", "customer_id": "c1"}', b"[1, 2]",
           b"null", b'{"ts": 1, "latency_ms": NaN, "endpoint": "/a"}',
           b'{"ts": 1, "latency_ms": 1e999, "endpoint": "/a"}',
           b'{"ts": 1, "endpoint": "/a", "pad": "' + b"y" * 1_000_000 + b'"}']  # fmt: skip
    lines = [json.dumps(item).encode() for item in good + hostile] + raw
    (folder / "hostile_events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    fixture = json.loads((FIXTURES / "debezium_postgres_create.json").read_text())["value"]
    changes = [json.dumps(fixture).encode()] + [
        json.dumps(change).encode()
        for change in (
            {**fixture, "op": 5, "after": "text"},
            {**fixture, "after": {"id": [1005]}},
            {**fixture, "source": {**fixture["source"], "ts_ms": int("9" * 400)}},
            {**fixture, "source": None}, {"payload": []},
        )
    ] + [b'{"op": "c", "after": {"id": 1, "name": "\xff"}}', b"\xff"]  # fmt: skip
    (folder / "hostile_changes.jsonl").write_bytes(b"\n".join(changes) + b"\n")
    text = HOSTILE.replace("PROVIDERS", PROVIDERS).replace("FOLDER", str(folder))
    for step, output in HOSTILE_OUTPUTS.items():
        text += (f"    - {{type: WriteToEndpoint, name: Write{output}, input: {step}, "
                 f"config: {{uri: 'file://{folder}/hostile/{output}'}}}}\n")  # fmt: skip
    for step in HOSTILE_ERRORS:
        uri = f"file://{folder}/hostile/dlq_{step}"
        text += (f"    - {{type: WriteToEndpoint, name: Dead{step}, input: {step}.errors, "
                 f"config: {{uri: '{uri}', dead_letters: true}}}}\n")  # fmt: skip
    return text
