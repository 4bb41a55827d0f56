"""``cdc_apply``: Debezium Postgres changes over 10k keys -> the final table.

The final table holds the latest change per key by LSN, deleted keys absent. Suite:
``cdc_replicate`` file -> file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam

from bench.data import cdc_file
from bench.jobs.common import Decode, Job, file_args, loops, run_suite

CDC_KEYS = 10_000


def _change(event: dict[str, Any]) -> tuple[tuple[str, Any], tuple[int, str, Any]]:
    """(table, id) -> (lsn, op, new row), as a user reads a Debezium event."""
    source = event["source"]
    image = event["after"] or event["before"]
    table = f"{source['schema']}.{source['table']}"
    return (table, image["id"]), (source["lsn"], event["op"], event["after"])


def _final_row(table: str, row: dict[str, Any]) -> str:
    return json.dumps({"table": table, "row": row})


def _cdc_loop(decode: Decode, path: Path, out: Path) -> int:
    state: dict[tuple[str, Any], tuple[int, str, Any]] = {}
    with path.open("rb") as lines:
        for line in lines:
            key, change = _change(decode(line))
            current = state.get(key)
            if current is None or change[0] > current[0]:
                state[key] = change
    rows = 0
    with out.open("w") as table_rows:
        for (table, _), (_, op, row) in state.items():
            if op != "d":
                table_rows.write(_final_row(table, row) + "\n")
                rows += 1
    return rows


def _latest(kv: tuple[tuple[str, Any], Any]) -> Iterator[str]:
    (table, _), changes = kv
    _, op, row = max(changes, key=lambda change: change[0])
    if op != "d":
        yield _final_row(table, row)


def _cdc_naive(path: Path, out: Path) -> int:
    """Map(json.loads) -> key by primary key -> GroupByKey -> the max LSN per key."""
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | beam.io.ReadFromText(str(path))
            | beam.Map(json.loads)
            | beam.Map(_change)
            | beam.GroupByKey()
            | beam.FlatMap(_latest)
            | beam.io.WriteToText(str(out))
        )
    return -1


def _cdc_suite(path: Path, out: Path) -> int:
    args = [*file_args(path, out), "--format=debezium",
            "--key_columns=inventory.customers=id"]  # fmt: skip
    return run_suite("cdc_replicate", args).count("written")


JOB = Job(
    cdc_file,
    {**loops(_cdc_loop), "naive_beam": _cdc_naive, "suite": _cdc_suite},
    keys=CDC_KEYS,
)
