"""FinalState: the replica's final table at the end of a bounded run, from the applied changes.

Input: `Block`s of `Record`s of applied `Change` dicts (`ApplyChanges` output, any order).
Output: `Block`s of one ``Record(change_dict)`` per live row of every source table: the key's
latest change, which is an upsert newer than the table's latest truncate, e.g.::

    Record({"table": "inventory.customers", "key": {"id": 1004}, "op": "upsert",
            "row": {"id": 1004, "email": "anne@example.com"},
            "sequence": [24023119, 24023128], "source_ts": "2019-05-28T08:58:24.863Z"})

Every table goes to the same files, told apart by the ``table`` field: a final row is itself a
change record, so the final table can be replayed into any sink of the latest-state stream.
Keys whose latest change is a delete are absent; rows older than their table's truncate are
absent. The latest change per key wins even if the apply step let an older upsert through after
a delete marker expired.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from transforms.blocks import Batch, Block
from transforms.cdc.change import key_id
from transforms.message import Record

__all__ = ["FinalState"]


def _sequence(change: dict[str, Any]) -> tuple[int, ...]:
    return tuple(change["sequence"])


def _keyed(block: list[Record]) -> Iterator[tuple[str, dict[str, Any]]]:
    for record in block:
        data = record.data
        yield key_id(data["table"], data["key"]), data


def _truncates(block: list[Record]) -> Iterator[tuple[str, tuple[int, ...]]]:
    for record in block:
        if record.data["op"] == "truncate":
            yield record.data["table"], _sequence(record.data)


def _live_rows(block: list[Record], truncated: dict[str, tuple[int, ...]]) -> Iterator[Block]:
    rows = Block()
    for record in block:
        change = record.data
        if change["op"] != "upsert":
            continue
        truncate = truncated.get(change["table"])
        if truncate is None or _sequence(change) > truncate:
            rows.append(Record(change))
    if rows:
        yield rows


class FinalState(beam.PTransform):
    """Reduces blocks of applied change records to the final rows of each table (see the module).

    Args:
        latest_per_key: the input holds only each key's latest change already (as
            `ApplyChanges` gives it when it compacts), so it is not looked for again.
    """

    def __init__(self, latest_per_key: bool = False) -> None:
        super().__init__()
        self._latest_per_key = latest_per_key

    def expand(self, applied: beam.PCollection) -> beam.PCollection:
        latest = applied
        if not self._latest_per_key:
            latest = (
                applied
                | "Key" >> beam.FlatMap(_keyed)
                | "Latest per key" >> beam.combiners.Top.PerKey(1, key=_sequence)
                | "Change" >> beam.Map(lambda keyed: Record(keyed[1][0]))
                | "Blocks" >> Batch()
            )
        truncated = latest | "Truncates" >> beam.FlatMap(_truncates)
        return latest | "Live rows" >> beam.FlatMap(
            _live_rows, truncated=beam.pvalue.AsDict(truncated)
        ).with_output_types(Block)
