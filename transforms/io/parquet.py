"""Parquet files of the ``file://`` sink (``format=parquet``).

`arrow_schema` gives the Arrow schema of a `Schema`; `ParquetFileSink` holds rows until a row
group is full.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
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
    """Writes record dicts as Parquet, `ROW_GROUP_ROWS` rows at a time.

    With a schema, each group of rows is written as a row group as soon as it is complete.
    Without one, each group is inferred as a table and kept in a temporary Arrow file; when the
    file is closed, the groups are written as row groups of the schema that unifies theirs (a
    column missing from a group is null there, an all-null column takes the type of the others),
    so memory holds one group at a time either way.
    """

    def __init__(self, schema: Schema | None, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self._schema = arrow_schema(schema) if schema is not None else None
        self._convert = _row_converter(schema.fields) if schema is not None else None
        self._row_group_rows = row_group_rows

    def open(self, fh: Any) -> None:
        self._fh = fh
        self._rows: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        self._spilled: list[str] = []  # the temporary Arrow files of the groups (no schema)

    def chunk(self, records: list[dict[str, Any]]) -> Any:
        """What the file sink holds of ``records`` until they are written: the records."""
        return records

    def write_chunks(self, chunks: Iterable[list[dict[str, Any]]]) -> None:
        """Writes the records of the chunks held, in order (as `write` does each)."""
        for records in chunks:
            for record in records:
                self.write(record)

    def write(self, record: dict[str, Any]) -> None:
        self._rows.append(self._convert(record) if self._convert is not None else record)
        if len(self._rows) >= self._row_group_rows:
            self._write_rows()

    def _write_rows(self) -> None:
        if self._schema is not None:
            self._write_group(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []
            return
        # Every field of every row of the group (from_pylist would take the first row's only).
        rows = pa.array(self._rows) if self._rows else None
        table = pa.Table.from_struct_array(rows) if rows is not None else pa.table({})
        self._rows = []
        with tempfile.NamedTemporaryFile(suffix=".arrow", delete=False) as spill:
            self._spilled.append(spill.name)
        with pa.OSFile(spill.name, "wb") as sink, pa.ipc.new_file(sink, table.schema) as ipc:
            ipc.write_table(table)

    def _write_group(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._fh, table.schema)
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))

    def _write_spilled(self) -> None:
        """Writes the spilled groups, each made to fit the schema unifying them all."""
        schemas = []
        for path in self._spilled:
            with pa.memory_map(path) as source:
                schemas.append(pa.ipc.open_file(source).schema)
        schema = pa.unify_schemas(schemas, promote_options="permissive")
        for path in self._spilled:
            with pa.memory_map(path) as source:
                table = pa.ipc.open_file(source).read_all()
                if not table.schema.equals(schema):
                    table = pa.Table.from_pylist(table.to_pylist(), schema=schema)
                self._write_group(table)
            os.remove(path)
        self._spilled = []

    def flush(self) -> None:
        if self._rows or (self._writer is None and not self._spilled):
            self._write_rows()
        if self._spilled:
            self._write_spilled()
        assert self._writer is not None
        self._writer.close()
        self._writer = None
