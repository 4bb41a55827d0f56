"""CompactChanges: each (table, key)'s latest change, for a bounded run into a final-state sink.

Input: `Block`s of `Record`s of `Change` dicts (as `NormalizeChanges` emits them). Output:
`Block`s holding one `Record` of a `Change` dict per (table, key), without its Message, in the
global window: the change of the greatest sequence, e.g.::

    Record({"table": "inventory.customers", "key": {"id": 1004}, "op": "delete", "row": None,
            "sequence": [24023200, 24023264], "source_ts": "2019-05-28T09:01:00Z"})

A truncate is the change of key ``{}`` of its table, so each table's latest truncate is kept.

How: a DoFn keeps, per key seen in its bundle, the latest change so far (its dict), and sends
these partials on at the end of the bundle or whenever `MAX_KEYS` are held, grouped into
`BUCKETS` dicts by a stable hash of the key (so a few elements cross the shuffle per bundle,
not one per key); a CombinePerKey merges the dicts of a bucket key by key. Memory is one change
per key (per bundle before the shuffle): flat in the number of changes. Nothing is made per
change but its key's text: the partials hold the change dicts that came in.

Counters: the kept change is counted ``applied``; a change of the same sequence as the kept one
is a duplicate (``dropped.cdc_duplicate``); an older one is superseded
(``dropped.cdc_superseded``), and so are the duplicates of a change that a later one replaces.
The DoFn counts what it finds superseded; the copies of each kept change travel with it (only
for keys that have some), and the combine's finds, to where the latest changes are emitted and
counted. The counts do not depend on how the input is split into bundles, and ``applied +
dropped`` is the number of input changes.

Why the final tables are those of the per-key state way (`transforms.cdc.apply`): in a bounded
batch run that way applies, per key, a sequence of changes whose last is the key's greatest
sequence (no delete marker expires before the end of the input), and a final-state sink keeps,
per key, the change of the greatest sequence, and per table, the latest truncate, which removes
every row older than itself whichever truncates came before it. The changes left out here are
exactly those that such a sink overwrites. So this way is only for sinks that keep the latest
state and nothing else (`transforms.cdc.final_state.FinalState`); a sink that keeps or forwards
every change (a change log, a message topic) needs them all.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from transforms.blocks import BLOCK_SIZE, Block, FoldPerBundle
from transforms.cdc.change import OPS, check_sequence, key_text
from transforms.cdc.decide import APPLIED, DUPLICATE, SUPERSEDED, DecisionCounters
from transforms.cdc.envelope import BadChange
from transforms.cdc.normalize import FAILED, timed
from transforms.dead_letter import ToDeadLetter, failure
from transforms.message import Record

__all__ = ["BUCKETS", "MAX_KEYS", "CompactChanges", "change_key", "keep_later"]

MAX_KEYS = 50_000
# The partials of a bundle cross the shuffle in this many dicts (by a stable hash of the key).
BUCKETS = 64

# key_id -> the change dict of the greatest sequence seen: the partials of one bucket.
Partials = dict[str, dict[str, Any]]
# key_id -> how many copies of its kept change were left out (only keys that had some): they
# are duplicates while that change stays the latest, superseded once a later one replaces it.
Copies = dict[str, int]
# What the combine holds per bucket: ``(partials, copies, superseded)``, the last the number of
# changes its merges found older than a key's latest (plain containers: Beam encodes them
# without pickling).
Bucket = tuple[Partials, Copies, int]


def change_key(record: Record) -> str:
    """The `key_id` of a change record; raises `BadChange` when it is not one or has no sequence.

    It checks what `Change` checks, without building one.
    """
    data = record.data
    try:
        table, key, op, sequence = data["table"], data["key"], data["op"], data["sequence"]
        if type(table) is not str or not table or op not in OPS or type(key) is not dict:
            raise ValueError(f"table {table!r}, op {op!r}, key {key!r}")
        if (op != "truncate" and not key) or (op == "upsert" and data.get("row") is None):
            raise ValueError(f"an {op} needs its primary key and an upsert its row")
        check_sequence(sequence)
        text = key_text(key)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadChange(f"not a change record: {exc!r}") from None
    if not sequence:
        raise BadChange(f"{table}: a change without a sequence cannot be ordered")
    return f"{table}|{text}"


def keep_later(held: Partials, copies: Copies, key: str, change: dict[str, Any], n: int = 0) -> int:
    """Keeps the later of ``held[key]`` and ``change``; returns how many changes it supersedes.

    Sequences compare element by element (`change_key` checked them: lists of integers here).
    Of equal sequences the one held stays (they are one change delivered twice) and the other
    becomes a copy of it; a change that replaces the held one supersedes it and its copies.

    Args:
        held: each key's latest change.
        copies: the copies of each key's latest change left out so far.
        key: the change's `key_id`.
        change: the change dict.
        n: copies of ``change`` already left out (when merging partials).
    """
    kept = held.get(key)
    if kept is not None and change["sequence"] <= kept["sequence"]:
        if change["sequence"] == kept["sequence"]:
            copies[key] = copies.get(key, 0) + 1 + n
            return 0
        return 1 + n
    held[key] = change
    superseded = 0 if kept is None else 1 + copies.pop(key, 0)
    if n:
        copies[key] = n
    return superseded


def bucket(key: str) -> int:
    """The bucket of a `key_id`: the same on every worker (unlike ``hash`` of a string)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % BUCKETS


def merge_into(kept: Bucket, partials: Partials, copies: Copies) -> Bucket:
    """Merges ``partials`` (with their ``copies``) into ``kept`` key by key (`keep_later`)."""
    held, held_copies, superseded = kept
    for key, change in partials.items():
        superseded += keep_later(held, held_copies, key, change, copies.get(key, 0))
    return held, held_copies, superseded


class _PreCompactFn(FoldPerBundle):
    """Blocks of change `Record`s -> ``(bucket, (Partials, Copies))``: per key, its latest.

    Records that are not change records go to `FAILED` (failures for `ToDeadLetter`).
    """

    def limit(self) -> int:
        return MAX_KEYS

    def setup(self) -> None:
        self._counters = DecisionCounters()

    def start_bundle(self) -> None:
        super().start_bundle()
        self._copies: Copies = {}

    def flushed(self, partials: Partials) -> Iterator[tuple[Any, None]]:
        copies, self._copies = self._copies, {}
        buckets: dict[int, tuple[Partials, Copies]] = {}
        for key, change in partials.items():
            number = bucket(key)
            held = buckets.get(number)
            if held is None:
                buckets[number] = held = ({}, {})
            held[0][key] = change
            if key in copies:
                held[1][key] = copies[key]
        for number, held in buckets.items():
            yield (number, held), None

    def process(self, block: list[Record]) -> Iterator[Any]:
        held, copies = self.partials, self._copies
        superseded = 0
        for record in block:
            try:
                key = change_key(record)
            except BadChange as exc:
                yield TaggedOutput(FAILED, timed(failure(record, exc), record.event_time))
                continue
            change = record.data
            if type(change["sequence"]) is not list:  # a tuple would not compare with a list
                change = {**change, "sequence": list(change["sequence"])}
            superseded += keep_later(held, copies, key, change)
        if superseded:
            self._counters.count(SUPERSEDED, superseded)
        yield from self.flush_if_full()


class _MergeLatestFn(beam.CombineFn):
    """Merges the partials of a bucket key by key; its accumulator is a `Bucket`."""

    def create_accumulator(self) -> Bucket:
        return {}, {}, 0

    def add_input(self, accumulator: Bucket, partials: tuple[Partials, Copies]) -> Bucket:
        return merge_into(accumulator, *partials)

    def merge_accumulators(self, accumulators: Iterable[Bucket]) -> Bucket:
        merged: Bucket = ({}, {}, 0)
        for bucket in accumulators:
            if len(bucket[0]) > len(merged[0]):
                merged, bucket = bucket, merged
            held, copies, superseded = merge_into(merged, bucket[0], bucket[1])
            merged = held, copies, superseded + bucket[2]
        return merged

    def extract_output(self, accumulator: Bucket) -> Bucket:
        return accumulator


class _EmitLatestFn(beam.DoFn):
    """``(bucket, Bucket)`` -> Blocks of the Records of its changes, decisions counted."""

    def setup(self) -> None:
        self._counters = DecisionCounters()

    def process(self, element: tuple[int, Bucket]) -> Iterator[Block]:
        changes, copies, superseded = element[1]
        block = Block()
        for change in changes.values():
            block.append(Record(change))
            if len(block) >= BLOCK_SIZE:
                yield block
                block = Block()
        if block:
            yield block
        self._counters.count(APPLIED, len(changes))
        duplicates = sum(copies.values())
        if duplicates:
            self._counters.count(DUPLICATE, duplicates)
        if superseded:
            self._counters.count(SUPERSEDED, superseded)


class CompactChanges(beam.PTransform):
    """Blocks of change records -> blocks of each key's latest change (see the module).

    Returns ``(latest, errors)``: ``latest`` are `Block`s of `Record`s of `Change` dicts;
    ``errors`` are dead-letter dicts (step ``apply``, reason ``cdc_bad_change``) of records that
    are not change records or have no sequence.

    Args:
        pipeline: the pipeline's name, for the dead-letter records.
    """

    def __init__(self, pipeline: str) -> None:
        super().__init__()
        self._pipeline = pipeline

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        partials = blocks | "Compact per bundle" >> beam.ParDo(_PreCompactFn()).with_outputs(
            FAILED, main="partials"
        )
        latest = (
            partials.partials
            | "Merge per key" >> beam.CombinePerKey(_MergeLatestFn())
            | "Latest change" >> beam.ParDo(_EmitLatestFn()).with_output_types(Block)
        )
        errors = partials[FAILED] | "ToDeadLetter" >> ToDeadLetter(self._pipeline, "apply")
        return latest, errors
