"""Parquet files of the ``file://`` sink (``format=parquet``).

`arrow_schema` gives the Arrow schema of a `Schema`; `ParquetFileSink` holds rows until a row
group is full.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.event_time import parse_timestamp
from transforms.schema import Field, Schema

__all__ = ["arrow_schema"]

_ARROW_TYPES = {
    "STRING": pa.string(),
    "BYTES": pa.binary(),
    "INTEGER": pa.int64(),
    "FLOAT": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _to_datetime(value: Any) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=round(parse_timestamp(value) * 1_000_000))


def _to_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _arrow_type(field: Field) -> pa.DataType:
    if field.type == "RECORD":
        kind: pa.DataType = pa.struct([_arrow_field(child) for child in field.fields])
    else:
        # Dates, times, numerics, geography and JSON are kept as text.
        kind = _ARROW_TYPES.get(field.type, pa.string())
    return pa.list_(kind) if field.mode == "REPEATED" else kind


def _converter(field: Field) -> Callable[[Any], Any] | None:
    """Returns how a JSON value of ``field`` becomes an Arrow value, or None when it is as is."""
    one: Callable[[Any], Any] | None
    if field.type == "RECORD":
        one = _row_converter(field.fields)
    elif field.type == "TIMESTAMP":
        one = _to_datetime
    elif _ARROW_TYPES.get(field.type, pa.string()) == pa.string() and field.type != "STRING":
        one = _to_text
    else:
        return None
    if field.mode == "REPEATED":
        return lambda values: None if values is None else [one(v) for v in values]
    return lambda value: None if value is None else one(value)


def _row_converter(fields: tuple[Field, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    converters = [(f.name, c) for f in fields if (c := _converter(f)) is not None]

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        if not converters:
            return row
        row = dict(row)
        for name, converter in converters:
            if name in row:
                row[name] = converter(row[name])
        return row

    return convert


def _arrow_field(field: Field) -> pa.Field:
    return pa.field(field.name, _arrow_type(field), nullable=field.mode != "REQUIRED")


def arrow_schema(schema: Schema) -> pa.Schema:
    """Returns the Parquet (Arrow) schema of a record schema."""
    return pa.schema([_arrow_field(field) for field in schema.fields])


ROW_GROUP_ROWS = 20_000
"""Rows the Parquet sink holds before it writes them as a row group."""


class ParquetFileSink:
    """Writes record dicts as Parquet row groups of a schema, `ROW_GROUP_ROWS` rows at a time.

    Each group of rows is written as a row group as soon as it is complete, so memory holds one
    group at a time. The schema is required: every file of a sink has the same columns and types
    (the file sink refuses ``format=parquet`` without ``--schema``), so a folder of them reads as
    one table.
    """

    def __init__(self, schema: Schema, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self._schema = arrow_schema(schema)
        self._convert = _row_converter(schema.fields)
        self._row_group_rows = row_group_rows

    def open(self, fh: Any) -> None:
        self._fh = fh
        self._rows: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None

    def chunk(self, records: list[dict[str, Any]]) -> Any:
        """What the file sink holds of ``records`` until they are written: the records."""
        return records

    def write_chunks(self, chunks: Iterable[list[dict[str, Any]]]) -> None:
        """Writes the records of the chunks held, in order (as `write` does each)."""
        for records in chunks:
            for record in records:
                self.write(record)

    def write(self, record: dict[str, Any]) -> None:
        self._rows.append(self._convert(record))
        if len(self._rows) >= self._row_group_rows:
            self._write_rows()

    def _write_rows(self) -> None:
        table = pa.Table.from_pylist(self._rows, schema=self._schema)
        self._rows = []
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._fh, self._schema)
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))

    def flush(self) -> None:
        if self._rows or self._writer is None:
            self._write_rows()
        assert self._writer is not None
        self._writer.close()
        self._writer = None
