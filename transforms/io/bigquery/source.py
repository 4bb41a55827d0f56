"""``bigquery://`` source: the rows of a table, once (bounded), as JSON messages.

URI::

    bigquery://PROJECT:DATASET.TABLE?endpoint=http://127.0.0.1:9050&where=reason = 'schema'

* ``endpoint``: the REST URL of a BigQuery emulator, as for the sink
  (`transforms.io.bigquery.client.make_client`).
* ``where``: an SQL condition on the table's columns; only the rows that meet it are read (the
  query runs in BigQuery, so a large table is not read whole). Without it every row is read.

Each row becomes one `Message` whose payload is the row as a JSON object: ``BYTES`` as base64,
``TIMESTAMP`` as RFC 3339 text, records as objects, repeated fields as lists (the form the file
sink writes, so a dead-letter table and a dead-letter file read alike)::

    Message(payload=b'{"reason": "schema", "payload_bytes": "eyJhIjog...", ...}',
            attributes={}, origin=Origin("bigquery", path="P.D.T", line=1))

``line`` is the row's position in the read, from 1. A read that fails fails the bundle (the
runner tries it again); the source is bounded and runs on every runner.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import msgspec

from transforms.blocks import Block
from transforms.io.base import BLOCK_SIZE, Source
from transforms.io.bigquery.sink import TABLE_PATTERN, table_location
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.message import Message, Origin

__all__ = ["BigQuerySource"]


def _encode_other(value: Any) -> Any:
    return str(value)


@beam.typehints.with_output_types(Block)
class _ReadRows(beam.DoFn):
    """One impulse -> `Block`s of the `Message`s of the table's rows, `BLOCK_SIZE` rows each."""

    def __init__(self, table: str, emulator: str | None, where: str | None) -> None:
        self._table = table
        self._emulator = emulator
        self._where = where

    def process(self, unused: Any) -> Iterator[Block]:
        from transforms.io.bigquery.client import make_client

        client = make_client(self._table.split(".")[0], self._emulator)
        encoder = msgspec.json.Encoder(enc_hook=_encode_other)
        try:
            if self._where is None:
                rows: Any = client.list_rows(self._table)
            else:
                sql = f"SELECT * FROM `{self._table}` WHERE {self._where}"
                rows = client.query(sql).result()
            messages = (
                Message(
                    encoder.encode(dict(row.items())),
                    {},
                    Origin("bigquery", path=self._table, line=number),
                )
                for number, row in enumerate(rows, start=1)
            )
            while block := Block(itertools.islice(messages, BLOCK_SIZE)):
                yield block
        finally:
            client.close()


class BigQuerySource(Source):
    """Reads the rows of a BigQuery table once, as `Block`s of JSON `Message`s (bounded).

    Args:
        endpoint: ``bigquery://PROJECT:DATASET.TABLE`` with optional ``endpoint`` and ``where``.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        endpoint.check_params(frozenset({"endpoint", "where"}))
        match = TABLE_PATTERN.fullmatch(table_location(endpoint))
        if match is None:
            raise EndpointError(
                f"{endpoint}: name the table as bigquery://PROJECT:DATASET.TABLE (or "
                "PROJECT/DATASET.TABLE)"
            )
        where = endpoint.params.get("where")
        if where == "":
            raise EndpointError(f"{endpoint}: where is empty: give an SQL condition, or omit it")
        self.table = f"{match['project']}.{match['dataset']}.{match['table']}"
        self.emulator = endpoint.params.get("endpoint") or None
        self.where = where

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "Rows" >> beam.ParDo(_ReadRows(self.table, self.emulator, self.where))
        )
