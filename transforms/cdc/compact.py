"""CompactChanges: each (table, key)'s latest change, for a bounded run into a final-state sink.

Input: `Block`s of `Record`s of `Change` dicts (as `NormalizeChanges` emits them). Output:
`Block`s holding one `Record` of a `Change` dict per (table, key), without its Message, in the
global window: the change of the greatest sequence, e.g.::

    Record({"table": "inventory.customers", "key": {"id": 1004}, "op": "delete", "row": None,
            "sequence": [24023200, 24023264], "source_ts": "2019-05-28T09:01:00Z"})

A truncate is the change of key ``{}`` of its table, so each table's latest truncate is kept.

How: a DoFn keeps, per key seen in its bundle, the latest change so far (a `Latest`), and sends
these partials on at the end of the bundle or whenever `MAX_KEYS` are held, grouped into
`BUCKETS` dicts by a stable hash of the key (so a few elements cross the shuffle per bundle,
not one per key); a CombinePerKey merges the dicts of a bucket key by key. Memory is one change
per key (per bundle before the shuffle): flat in the number of changes.

Counters: the kept change is counted ``applied``; a change of the same sequence as the kept one
is a duplicate (``dropped.cdc_duplicate``); an older one is superseded
(``dropped.cdc_superseded``). The counts do not depend on how the input is split into bundles,
and ``applied + dropped`` is the number of input changes.

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

__all__ = ["BUCKETS", "MAX_KEYS", "CompactChanges", "change_key"]

MAX_KEYS = 50_000
# The partials of a bundle cross the shuffle in this many dicts (by a stable hash of the key).
BUCKETS = 64

# ``(sequence, change dict, duplicates, superseded)``: a key's latest change and how many of its
# other changes it stands for (a plain tuple, which Beam encodes without pickling).
Latest = tuple[tuple[int, ...], dict[str, Any], int, int]
# key_id -> its Latest: the partials of one bucket.
Partials = dict[str, Latest]


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


def merge(kept: Latest, other: Latest) -> Latest:
    """The later of two partials of a key, counting the other's changes as dropped.

    Of equal sequences the first is kept (they are one change delivered twice).
    """
    if other[0] > kept[0]:
        kept, other = other, kept
    elif other[0] == kept[0]:
        return kept[0], kept[1], kept[2] + other[2] + 1, kept[3] + other[3]
    return kept[0], kept[1], kept[2], kept[3] + other[3] + other[2] + 1


def bucket(key: str) -> int:
    """The bucket of a `key_id`: the same on every worker (unlike ``hash`` of a string)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % BUCKETS


def merge_into(kept: Partials, partials: Partials) -> Partials:
    """Merges ``partials`` into ``kept`` key by key (`merge`); returns ``kept``."""
    for key, latest in partials.items():
        held = kept.get(key)
        kept[key] = latest if held is None else merge(held, latest)
    return kept


class _PreCompactFn(FoldPerBundle):
    """Blocks of change `Record`s -> ``(bucket, Partials)``: per key of the bundle, its latest.

    Records that are not change records go to `FAILED` (failures for `ToDeadLetter`).
    """

    def limit(self) -> int:
        return MAX_KEYS

    def flushed(self, partials: Partials) -> Iterator[tuple[Any, None]]:
        buckets: dict[int, Partials] = {}
        for key, latest in partials.items():
            number = bucket(key)
            held = buckets.get(number)
            if held is None:
                buckets[number] = held = {}
            held[key] = latest
        for number, held in buckets.items():
            yield (number, held), None

    def process(self, block: list[Record]) -> Iterator[Any]:
        held = self.partials
        for record in block:
            try:
                key = change_key(record)
            except BadChange as exc:
                yield TaggedOutput(FAILED, timed(failure(record, exc), record.event_time))
                continue
            data = record.data
            latest = (tuple(data["sequence"]), data, 0, 0)
            kept = held.get(key)
            held[key] = latest if kept is None else merge(kept, latest)
        yield from self.flush_if_full()


class _MergeLatestFn(beam.CombineFn):
    """Merges the partials of a bucket key by key; its accumulator is a `Partials` dict."""

    def create_accumulator(self) -> Partials:
        return {}

    def add_input(self, accumulator: Partials, partials: Partials) -> Partials:
        return merge_into(accumulator, partials)

    def merge_accumulators(self, accumulators: Iterable[Partials]) -> Partials:
        merged: Partials = {}
        for partials in accumulators:
            if len(partials) > len(merged):
                merged, partials = partials, merged
            merge_into(merged, partials)
        return merged

    def extract_output(self, accumulator: Partials) -> Partials:
        return accumulator


class _EmitLatestFn(beam.DoFn):
    """``(bucket, Partials)`` -> Blocks of the Records of its changes, decisions counted."""

    def setup(self) -> None:
        self._counters = DecisionCounters()

    def process(self, element: tuple[int, Partials]) -> Iterator[Block]:
        block = Block()
        duplicates = superseded = 0
        for _, change, duplicated, older in element[1].values():
            block.append(Record(change))
            duplicates += duplicated
            superseded += older
            if len(block) >= BLOCK_SIZE:
                yield block
                block = Block()
        if block:
            yield block
        self._counters.count(APPLIED, len(element[1]))
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
