"""ApplyChanges and FinalState: order per key, duplicates, stale changes, deletes, truncates.

The property test generates histories of a small table (at most 5 keys): a snapshot, then
inserts, updates, deletes, primary-key changes and truncates, each a Postgres transaction
rendered as Debezium events (half of them schema-wrapped) with increasing LSNs and a tombstone
after every delete. Delivery shuffles them within a bounded disorder and repeats some. The
source table's final state is kept by the generator itself; the replica is built from what the
apply step lets through, by the rule every sink follows (upsert sets the row, delete removes it,
a truncate removes rows older than it and refuses older rows that come later).
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_stream
from apache_beam.transforms.window import TimestampedValue
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import COLLECTED, Collect
from transforms.blocks import Batch, Unbatch
from transforms.cdc.apply import APPLIED, DUPLICATE, STALE, ApplyChanges, KeyState, apply_change
from transforms.cdc.change import Change, key_id
from transforms.cdc.debezium import DropTombstones, is_tombstone
from transforms.cdc.final_state import FinalState
from transforms.cdc.normalize import ChangeReader, NormalizeChanges
from transforms.message import Message, Origin, Record
from transforms.metrics import counter_totals
from transforms.parse import ParseJson

BASE = 1_732_528_800
TABLE = "inventory.customers"
PIPELINE = "cdc_test"


def change(key: int, op: str, seq: int, table: str = TABLE) -> Record:
    """A change record of ``{"id": key}``; an upsert's row records its sequence."""
    row = {"id": key, "version": seq} if op == "upsert" else None
    return Record(Change(table, {} if op == "truncate" else {"id": key}, op, row, (seq,)).to_dict())


def at(seconds: float, record: Record) -> TimestampedValue:
    """The record at event time ``BASE + seconds`` (in the record, and as its timestamp)."""
    return TimestampedValue(record._replace(event_time=BASE + seconds), BASE + seconds)


def parsed_blocks(messages: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
    """`Message`s -> tombstones dropped -> Parse -> blocks of parsed records, and parse errors."""
    return messages | "Blocks" >> Batch() | DropTombstones() | ParseJson(PIPELINE)


def run(build: Any, streaming: bool = False) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Runs ``build(pipeline) -> (blocks, errors)``; returns their data and the counters."""
    tag = uuid.uuid4().hex
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=streaming))
    outputs, errors = build(pipeline)
    _ = outputs | "Records" >> Unbatch() | "Collect" >> beam.ParDo(Collect(tag))
    _ = errors | "Collect errors" >> beam.ParDo(Collect(tag + "errors"))
    result = pipeline.run()
    result.wait_until_finish()
    records = COLLECTED.pop(tag, [])
    return (
        [r.data for r in records],
        COLLECTED.pop(tag + "errors", []),
        counter_totals(result.metrics()),
    )


def sequences_per_key(changes: list[dict]) -> dict[str, list[list[int]]]:
    per_key: dict[str, list[list[int]]] = defaultdict(list)
    for data in changes:
        per_key[key_id(data["table"], data["key"])].append(data["sequence"])
    return dict(per_key)


# --- the pure decision ---------------------------------------------------------------------


def test_apply_change_decides_from_the_state_alone() -> None:
    up = Change.from_dict(change(1, "upsert", 10).data)
    assert apply_change(None, up) == (APPLIED, KeyState((10,), False))
    assert apply_change(KeyState((10,), False), up) == (DUPLICATE, KeyState((10,), False))
    assert apply_change(KeyState((12,), True), up) == (STALE, KeyState((12,), True))
    delete = Change.from_dict(change(1, "delete", 11).data)
    assert apply_change(KeyState((10,), False), delete) == (APPLIED, KeyState((11,), True))
    longer = Change(TABLE, {"id": 1}, "upsert", {"id": 1}, (10, 0))
    assert apply_change(KeyState((10,), False), longer)[0] == APPLIED


def test_bad_retention_and_bad_records() -> None:
    with pytest.raises(ValueError):
        ApplyChanges(PIPELINE, "0s")
    with pytest.raises(ValueError):
        ApplyChanges(PIPELINE, "soon")

    def build(pipeline: beam.Pipeline) -> Any:
        unordered = Change(TABLE, {"id": 2}, "delete", None, ()).to_dict()
        records = [change(1, "upsert", 1), Record({"table": TABLE, "op": "upsert"}),
                   Record(unordered)]  # fmt: skip
        return pipeline | beam.Create(records) | Batch() | ApplyChanges(PIPELINE)

    applied, errors, _ = run(build)
    assert [a["sequence"] for a in applied] == [[1]]
    assert [(e["step"], e["reason"]) for e in errors] == [("apply", "cdc_bad_change")] * 2


# --- streaming, with TestStream -------------------------------------------------------------


def test_duplicates_stale_and_a_late_older_upsert_after_a_delete(live_direct_runner: None) -> None:
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(BASE)
        .add_elements([at(0, change(1, "upsert", 10)), at(0, change(2, "upsert", 3))])
        .add_elements([at(0, change(1, "upsert", 10)), at(1, change(2, "upsert", 4))])
        .add_elements([at(1, change(1, "upsert", 5)), at(1, change(2, "upsert", 4))])
        .add_elements([at(2, change(1, "delete", 20))])
        .advance_watermark_to(BASE + 60)
        .add_elements([at(1, change(1, "upsert", 15)), at(0, change(2, "upsert", 3))])
        .advance_watermark_to_infinity()
    )

    applied, errors, counters = run(lambda p: p | stream | Batch() | ApplyChanges(PIPELINE), True)

    assert errors == []
    assert sequences_per_key(applied) == {
        key_id(TABLE, {"id": 1}): [[10], [20]],
        key_id(TABLE, {"id": 2}): [[3], [4]],
    }
    assert counters["applied"] == 4
    assert counters[f"dropped.{DUPLICATE}"] == 2
    assert counters[f"dropped.{STALE}"] == 3
    assert counters["dropped"] == 5


def test_a_delete_marker_expires_after_the_retention() -> None:
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(BASE)
        .add_elements([at(0, change(1, "upsert", 10)), at(0, change(2, "upsert", 10))])
        .add_elements([at(1, change(1, "delete", 20)), at(100, change(2, "delete", 20))])
        # Key 1's marker expires at BASE + 61; key 2's at BASE + 160.
        .advance_watermark_to(BASE + 120)
        .add_elements([at(2, change(1, "upsert", 15)), at(2, change(2, "upsert", 15))])
        .advance_watermark_to_infinity()
    )

    applied, _, _ = run(lambda p: p | stream | Batch() | ApplyChanges(PIPELINE, "60s"), True)

    assert sequences_per_key(applied) == {
        # Past the retention the older upsert comes back: the documented limit.
        key_id(TABLE, {"id": 1}): [[10], [20], [15]],
        key_id(TABLE, {"id": 2}): [[10], [20]],
    }


# --- batch, with the final state ------------------------------------------------------------


def final_table(records: list[Record]) -> dict[str, dict[Any, Any]]:
    def build(pipeline: beam.Pipeline) -> Any:
        applied, errors = pipeline | beam.Create(records) | Batch() | ApplyChanges(PIPELINE)
        return applied | FinalState(), errors

    rows, errors, _ = run(build)
    assert errors == []
    assert all(row["op"] == "upsert" for row in rows)
    tables: dict[str, dict[Any, Any]] = defaultdict(dict)
    for row in rows:
        tables[row["table"]][row["key"]["id"]] = row["row"]
    return dict(tables)


def test_a_key_change_leaves_only_the_new_key() -> None:
    records = [
        change(1, "upsert", 10),
        change(1, "delete", 20),  # UPDATE customers SET id = 2 WHERE id = 1
        change(2, "upsert", 21),
        change(1, "upsert", 15),  # late and older than the delete
        change(1, "delete", 20),  # redelivered
    ]
    assert final_table(records) == {TABLE: {2: {"id": 2, "version": 21}}}


def test_a_truncate_removes_older_rows_even_those_arriving_after_it() -> None:
    other = "inventory.orders"
    records = [
        change(1, "upsert", 10),
        change(2, "upsert", 12),
        change(0, "truncate", 20),
        change(3, "upsert", 25),
        change(2, "upsert", 15),  # applied (newer than 12) but older than the truncate
        change(1, "upsert", 30),
        change(0, "truncate", 20),  # redelivered
        change(7, "upsert", 11, other),  # another table is not truncated
    ]
    assert final_table(records) == {
        TABLE: {1: {"id": 1, "version": 30}, 3: {"id": 3, "version": 25}},
        other: {7: {"id": 7, "version": 11}},
    }


# --- the property: random histories end in the source's final state --------------------------

KEYS = (1, 2, 3, 4, 5)
Event = tuple[str | None, bytes]  # (Kafka message key, payload); b"" is a tombstone


class History:
    """A random history of table ``inventory.<name>`` and the events Debezium writes for it."""

    def __init__(self, rng: random.Random, name: str) -> None:
        self.name = name
        self.rng = rng
        self.rows: dict[int, dict[str, Any]] = {}
        self.events: list[Event] = []
        self.lsn = 1_000
        self.commit: int | None = None
        self.version = 0
        snapshot_lsn = self.lsn
        for key in rng.sample(KEYS, rng.randint(0, 3)):
            self.rows[key] = self._row(key)
            self._emit("r", None, self.rows[key], (None, snapshot_lsn))
        for _ in range(rng.randint(1, 20)):
            self._transaction()

    def _row(self, key: int) -> dict[str, Any]:
        self.version += 1
        return {"id": key, "name": f"{self.name}-{self.version}", "version": self.version}

    def _transaction(self) -> None:
        present = sorted(self.rows)
        absent = [key for key in KEYS if key not in self.rows]
        choices = (["insert"] if absent else []) + (["update", "delete"] if present else [])
        choices += ["key_change"] if present and absent else []
        op = "truncate" if self.rng.random() < 0.05 else self.rng.choice(choices)
        if op == "insert":
            key = self.rng.choice(absent)
            self.rows[key] = self._row(key)
            self._emit("c", None, self.rows[key])
        elif op == "update":
            key = self.rng.choice(present)
            before, self.rows[key] = self.rows[key], self._row(key)
            self._emit("u", before, self.rows[key])
        elif op == "delete":
            key = self.rng.choice(present)
            self._emit("d", self.rows.pop(key), None)
        elif op == "key_change":  # Debezium: delete of the old key, then create of the new one
            old, new = self.rng.choice(present), self.rng.choice(absent)
            self._emit("d", self.rows.pop(old), None)
            self.rows[new] = {**self._row(new), "name": f"moved from {old}"}
            self._emit("c", None, self.rows[new])
        else:
            self.rows.clear()
            self._emit("t", None, None)
        self.lsn += self.rng.randint(1, 40)
        self.commit = self.lsn

    def _emit(
        self,
        op: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        sequence: tuple[int | None, int] | None = None,
    ) -> None:
        if sequence is None:
            self.lsn += self.rng.randint(1, 40)
            sequence = (self.commit, self.lsn)
        commit, lsn = sequence
        value: dict[str, Any] = {
            "before": before,
            "after": after,
            "source": {
                "version": "2.7.3.Final", "connector": "postgresql", "name": "prop",
                "ts_ms": BASE * 1000 + lsn, "snapshot": "true" if op == "r" else "false",
                "db": "postgres", "schema": "inventory", "table": self.name, "txId": lsn,
                "lsn": lsn,
                "sequence": json.dumps([None if commit is None else str(commit), str(lsn)]),
            },
            "op": op,
            "ts_ms": BASE * 1000 + lsn + 7,
            "transaction": None,
        }  # fmt: skip
        row = after or before
        key = None if row is None else {"id": row["id"]}
        if self.rng.random() < 0.5:  # the JSON converter with schemas enabled
            value = {"schema": {"type": "struct", "name": "Envelope"}, "payload": value}
            key = None if key is None else {"schema": {"type": "struct"}, "payload": key}
        key_text = None if key is None else json.dumps(key)
        self.events.append((key_text, json.dumps(value).encode()))
        if op == "d":
            self.events.append((key_text, b""))

    def delivered(self, disorder: float = 4.0, duplicates: float = 0.2) -> list[Event]:
        """The events as delivered: each moved by less than ``disorder``, some repeated."""
        placed = [(i + self.rng.uniform(0, disorder), e) for i, e in enumerate(self.events)]
        placed += [
            (i + self.rng.uniform(0, disorder), e)
            for i, e in enumerate(self.events)
            if self.rng.random() < duplicates
        ]
        return [event for _, event in sorted(placed, key=lambda item: item[0])]


class Replica:
    """A table kept from the latest-state stream by the rule sinks follow."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[tuple[int, ...], dict[str, Any]]] = {}
        self.truncated: tuple[int, ...] = ()

    def write(self, applied: Change) -> None:
        if applied.op == "truncate":
            self.truncated = max(self.truncated, applied.sequence)
            self.rows = {k: v for k, v in self.rows.items() if v[0] > self.truncated}
        elif applied.op == "delete":
            self.rows.pop(applied.key["id"], None)
        elif applied.sequence > self.truncated and applied.row is not None:
            self.rows[applied.key["id"]] = (applied.sequence, applied.row)

    def table(self) -> dict[int, dict[str, Any]]:
        return {key: row for key, (_, row) in self.rows.items()}


def replicate_in_python(events: list[Event]) -> dict[int, dict[str, Any]]:
    """Tombstones dropped, envelopes read, changes decided by `apply_change`, then replicated."""
    reader = ChangeReader("debezium")
    states: dict[str, KeyState] = {}
    replica = Replica()
    for key, payload in events:
        if is_tombstone(payload):
            continue
        read = reader.read(json.loads(payload), key)
        assert isinstance(read, Change)
        kid = key_id(read.table, read.key)
        decision, states[kid] = apply_change(states.get(kid), read)
        if decision == APPLIED:
            replica.write(read)
    return replica.table()


@settings(max_examples=1000, deadline=None)
@given(st.randoms(use_true_random=False))
def test_any_history_delivered_in_disorder_with_duplicates_ends_in_the_source_state(
    rng: random.Random,
) -> None:
    history = History(rng, "customers")
    assert replicate_in_python(history.delivered()) == history.rows


def test_twenty_histories_through_beam_end_in_their_source_states() -> None:
    histories = [History(random.Random(seed), f"h{seed}") for seed in range(20)]
    messages = [
        Message(payload, {}, Origin("kafka", topic="cdc", partition=0, offset=i, key=key))
        for i, (key, payload) in enumerate(e for h in histories for e in h.delivered())
    ]

    def build(pipeline: beam.Pipeline) -> Any:
        records, parse_errors = parsed_blocks(pipeline | beam.Create(messages))
        changes, normalize_errors = records | NormalizeChanges(PIPELINE, "debezium")
        applied, apply_errors = changes | ApplyChanges(PIPELINE)
        errors = (parse_errors, normalize_errors, apply_errors) | beam.Flatten()
        return applied | FinalState(), errors

    rows, errors, counters = run(build)

    assert errors == []
    tables: dict[str, dict[int, dict[str, Any]]] = {f"inventory.{h.name}": {} for h in histories}
    for row in rows:
        tables[row["table"]][row["key"]["id"]] = row["row"]
    assert tables == {f"inventory.{h.name}": h.rows for h in histories}
    assert counters["applied"] + counters["dropped"] == len(messages)
    assert counters["dropped.tombstone"] == sum(is_tombstone(m.payload) for m in messages)
