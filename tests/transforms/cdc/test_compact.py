"""CompactChanges against the per-key state way of ApplyChanges, on the same input.

A batch run of a bounded input with ``latest_only`` compacts; the same run without it takes the
stateful DoFn. Both feed FinalState: the final tables must be equal, whatever the delivery
order, the duplicates, deletes, re-inserts and truncates; both balance
(``applied + dropped`` is the input); the compacting way emits exactly each key's newest change.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.transforms.window import FixedWindows, TimestampedValue

import transforms.cdc.compact as compact
from tests.transforms.cdc.test_apply import (
    BASE,
    PIPELINE,
    TABLE,
    History,
    change,
    parsed_blocks,
    run,
)
from transforms.blocks import Batch
from transforms.cdc.apply import DUPLICATE, ApplyChanges
from transforms.cdc.change import key_id
from transforms.cdc.compact import _MergeLatestFn
from transforms.cdc.decide import SUPERSEDED
from transforms.cdc.final_state import FinalState
from transforms.cdc.normalize import NormalizeChanges
from transforms.message import Message, Origin, Record

Outcome = tuple[list[Any], list[Any], dict[str, int]]
_WHEN_AND_WHERE = ("error_timestamp", "stacktrace")


def both_ways(elements: list[Any], final: bool = True, windowed: bool = False) -> list[Outcome]:
    """Runs ApplyChanges (then FinalState if ``final``) on ``elements``, compacting and not.

    Returns:
        ``[compacted, stateful]``: each ``(outputs, errors, counters)``, outputs sorted.
    """
    outcomes = []
    for latest_only in (True, False):

        def build(pipeline: beam.Pipeline, latest_only: bool = latest_only) -> Any:
            changes = pipeline | beam.Create(elements, reshuffle=False)
            if windowed:
                changes = changes | beam.WindowInto(FixedWindows(60))
            applied, errors = changes | Batch() | ApplyChanges(PIPELINE, latest_only=latest_only)
            final_state = FinalState(latest_per_key=latest_only)
            return (applied | final_state if final else applied), errors

        outputs, errors, counters = run(build)
        # When and where (the stack) a record failed differ; what failed and why must not.
        errors = [{k: v for k, v in e.items() if k not in _WHEN_AND_WHERE} for e in errors]
        outcomes.append((sorted(outputs, key=repr), sorted(errors, key=repr), counters))
    return outcomes


def message(line: int) -> Message:
    return Message(b'{"op": "c"}', {"h": "v"}, Origin("file", path="/in/cdc.jsonl", line=line))


def history(rng: random.Random) -> list[Any]:
    """Changes of several keys and two tables, each key's in sequence order, keys interleaved.

    Upserts, deletes, re-inserts and truncates (several per table); some redelivered (with
    another Message), some records without a Message.
    """
    per_key: list[list[Any]] = []
    sequence = 0
    for table in (TABLE, "inventory.orders"):
        for key in range(6):
            changes = []
            for _ in range(rng.randint(1, 8)):
                sequence += rng.randint(1, 5)
                op = "truncate" if key == 0 else rng.choice(("upsert", "upsert", "delete"))
                record = change(key, op, sequence, table)
                if rng.random() < 0.7:
                    record = Record(record.data, message(sequence))
                changes.append(TimestampedValue(record, BASE + rng.uniform(-100, 100)))
            per_key.append(changes)
    delivered: list[Any] = []
    while any(per_key):
        changes = rng.choice([changes for changes in per_key if changes])
        delivered.append(changes.pop(0))
        if rng.random() < 0.2:  # redelivered later, from another message
            changes.insert(0, TimestampedValue(Record(delivered[-1].value.data, message(-1)), BASE))
    return delivered


def newest(changes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each key's change of the greatest sequence."""
    latest: dict[str, dict[str, Any]] = {}
    for data in sorted(changes, key=lambda data: data["sequence"]):
        latest[key_id(data["table"], data["key"])] = data
    return latest


def expected_counts(changes: list[dict[str, Any]]) -> dict[str, int]:
    """What compacting counts: per key, copies of the newest change are duplicates, older ones
    are superseded."""
    kept = newest(changes)
    copies = Counter(
        key_id(data["table"], data["key"]) for data in changes if data in kept.values()
    )
    duplicates = sum(copies.values()) - len(kept)
    return {
        "applied": len(kept),
        f"dropped.{DUPLICATE}": duplicates,
        f"dropped.{SUPERSEDED}": len(changes) - len(kept) - duplicates,
    }


@pytest.mark.parametrize("order", ["sequence", "shuffled"])
def test_both_ways_end_in_the_same_final_tables_and_balance(order: str) -> None:
    for seed in range(4):
        rng = random.Random(seed)
        elements = history(rng)
        if order == "shuffled":
            rng.shuffle(elements)
        (compacted, errors, counts), (stateful, plain_errors, plain_counts) = both_ways(elements)
        assert compacted == stateful
        assert errors == plain_errors == []
        for counters in (counts, plain_counts):
            assert counters["applied"] + counters.get("dropped", 0) == len(elements)
        data = [element.value.data for element in elements]
        assert {k: counts.get(k, 0) for k in expected_counts(data)} == expected_counts(data)


def test_compacting_emits_each_keys_newest_change_only() -> None:
    elements = history(random.Random(7))
    for windowed in (False, True):
        (compacted, _, _), (stateful, _, _) = both_ways(elements, final=False, windowed=windowed)
        assert sorted(compacted, key=repr) == sorted(newest(stateful).values(), key=repr)


def test_truncates_remove_older_rows_whatever_their_order() -> None:
    elements = [
        change(1, "upsert", 10),
        change(0, "truncate", 20),
        change(2, "upsert", 30),
        change(0, "truncate", 40),
        change(3, "upsert", 50),
        change(2, "upsert", 35),  # older than the latest truncate, delivered last
        change(0, "truncate", 20),  # a redelivered older truncate
    ]
    for ordered in (elements, elements[::-1]):
        (compacted, _, counts), (stateful, _, _) = both_ways(ordered)
        assert compacted == stateful
        assert [row["key"] for row in compacted] == [{"id": 3}]
        assert (counts["applied"], counts[f"dropped.{SUPERSEDED}"]) == (4, 3)


def test_a_late_older_upsert_after_a_delete_stays_deleted() -> None:
    elements = [
        TimestampedValue(change(1, "upsert", 10), BASE),
        TimestampedValue(change(1, "delete", 20), BASE + 1),
        TimestampedValue(change(1, "upsert", 15), BASE + 1000),
        TimestampedValue(change(2, "upsert", 5), BASE),
        TimestampedValue(change(2, "upsert", 5), BASE),
    ]
    (compacted, _, counts), (stateful, _, _) = both_ways(elements)
    assert compacted == stateful == [change(2, "upsert", 5).data]
    assert counts[f"dropped.{SUPERSEDED}"] == 2 and counts[f"dropped.{DUPLICATE}"] == 1


def test_bad_records_are_dead_lettered_alike() -> None:
    elements = [
        change(1, "upsert", 1),
        Record({"table": TABLE, "op": "upsert"}),
        Record({**change(2, "delete", 2).data, "sequence": []}),
        change(1, "upsert", 1),
    ]
    compacted, stateful = both_ways(elements)
    assert compacted == stateful
    assert len(compacted[1]) == 2


def test_flushing_partials_before_the_bundle_ends_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elements = history(random.Random(3))
    expected = both_ways(elements)
    monkeypatch.setattr(compact, "MAX_KEYS", 2)
    assert both_ways(elements) == expected


def test_merge_counts_do_not_depend_on_how_partials_are_grouped() -> None:
    rng = random.Random(1)
    combine = _MergeLatestFn()
    for _ in range(50):
        sequences = [[rng.randint(1, 6)] for _ in range(rng.randint(1, 12))]
        expected = (max(sequences), sequences.count(max(sequences)) - 1)
        for _ in range(5):
            rng.shuffle(sequences)
            buckets = [combine.add_input(combine.create_accumulator(), ({"k": {"sequence": s}}, {}))
                       for s in sequences]  # fmt: skip
            while len(buckets) > 1:  # merge random neighbours, as bundles and combines do
                i = rng.randrange(len(buckets) - 1)
                buckets[i : i + 2] = [combine.merge_accumulators(buckets[i : i + 2])]
            changes, copies, superseded = combine.extract_output(buckets[0])
            duplicates = copies.get("k", 0)
            assert (changes["k"]["sequence"], duplicates) == expected
            assert 1 + duplicates + superseded == len(sequences)


def test_disordered_debezium_histories_end_in_the_same_final_tables() -> None:
    histories = [History(random.Random(seed), f"h{seed}") for seed in range(10)]
    events = [event for history in histories for event in history.delivered(disorder=6.0)]
    messages = [
        Message(payload, {}, Origin("kafka", topic="cdc", partition=0, offset=i, key=key))
        for i, (key, payload) in enumerate(events)
    ]

    def normalize(pipeline: beam.Pipeline) -> Any:
        records, _ = parsed_blocks(pipeline | beam.Create(messages))
        return records | NormalizeChanges(PIPELINE, "debezium")

    changes, errors, _ = run(normalize)
    assert errors == []
    collected = [Record(data) for data in changes]
    (compacted, _, counts), (stateful, _, plain_counts) = both_ways(collected)
    assert compacted == stateful
    assert counts["applied"] + counts["dropped"] == len(collected)
    assert plain_counts["applied"] + plain_counts["dropped"] == len(collected)
    assert {row["table"] for row in compacted} <= {f"inventory.{h.name}" for h in histories}
