"""Benchmark input, written once to JSON Lines files and reused (never a large Create).

* `events_file`: generated events (`transforms.io.generator.EventGenerator`), optionally with a
  share of malformed payloads (the generator's broken forms: bad JSON, bad UTF-8, wrong types,
  bad or missing event times, non-objects).
* `cdc_file`: Debezium Postgres change events (the event value, schemas off, as
  `transforms.cdc.debezium` reads it) of inserts, updates and deletes over a fixed key space,
  with increasing LSNs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec

from transforms.io.generator import BLOCK, EventGenerator

START = 1_764_064_800.0  # a whole hour
SPAN_SECONDS = 3600.0
CDC_TABLE = ("inventory", "customers")
CDC_DELETE_SHARE = 0.1


def events_file(folder: Path, count: int, keys: int, seed: int = 1, malformed: float = 0.0) -> Path:
    """Writes ``count`` events (``keys`` distinct users, one hour of event time) once, reuses it.

    A share ``malformed`` of the payloads is broken as the generator breaks them.

    Returns:
        The path of the JSON Lines file (about 200 bytes a line).
    """
    suffix = f"-bad{malformed:g}" if malformed else ""
    path = folder / f"events-{count}-{keys}-{seed}{suffix}.jsonl"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    generator = EventGenerator(seed=seed, malformed=malformed, late=0.0, users=keys)
    encode = msgspec.json.encode
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        for block in range(-(-count // BLOCK)):
            rng = generator.block_random(block)
            for index in range(block * BLOCK, min(count, (block + 1) * BLOCK)):
                event_time = START + index * SPAN_SECONDS / count
                if malformed:
                    out.write(generator.message(rng, index, event_time).value.payload + b"\n")
                else:
                    out.write(encode(generator.event(rng, index, event_time)) + b"\n")
    partial.rename(path)
    return path


def cdc_file(folder: Path, count: int, keys: int, seed: int = 1) -> Path:
    """Writes ``count`` Debezium Postgres change events over ``keys`` primary keys once.

    A key not live is inserted (``c``); a live key is updated (``u``) or, one time in ten,
    deleted (``d``, the old row holding only the key, as with the default replica identity).
    LSNs increase through the file; ``source.sequence`` is ``[previous lsn, lsn]``.

    Returns:
        The path of the JSON Lines file (about 500 bytes a line).
    """
    path = folder / f"cdc-{count}-{keys}-{seed}.jsonl"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    live: set[int] = set()
    lsn = 24_000_000
    encode = msgspec.json.encode
    schema, table = CDC_TABLE
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        for index in range(count):
            key = rng.randrange(keys)
            previous, lsn = lsn, lsn + rng.randint(8, 64)
            ts_ms = int(START * 1000) + index
            row = {"id": key, "name": f"customer {key}", "email": f"c{key}@example.com",
                   "balance": round(rng.uniform(0, 1000), 2), "version": index}  # fmt: skip
            if key not in live:
                op, before, after = "c", None, row
                live.add(key)
            elif rng.random() < CDC_DELETE_SHARE:
                op, after = "d", None
                before = {"id": key, "name": None, "email": None, "balance": None, "version": None}
                live.discard(key)
            else:
                op, before, after = "u", None, row
            source = {
                "version": "2.7.3.Final", "connector": "postgresql", "name": "dbserver1",
                "ts_ms": ts_ms, "snapshot": "false", "db": "postgres",
                "sequence": json.dumps([str(previous), str(lsn)]), "schema": schema,
                "table": table, "txId": 1000 + index, "lsn": lsn, "xmin": None,
            }  # fmt: skip
            value = {"before": before, "after": after, "source": source, "transaction": None,
                     "op": op, "ts_ms": ts_ms + 5}  # fmt: skip
            out.write(encode(value) + b"\n")
    partial.rename(path)
    return path
