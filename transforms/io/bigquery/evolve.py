"""Schema evolution of a ``bigquery://`` sink's table (``schema_update=add_fields``).

A row with top-level fields the table lacks adds them as NULLABLE columns before it is written:
each column's type comes from the pipeline's schema when it declares the field, else from the
value (`infer_field`). The table is read, extended and patched with its ETag, then read again
until it has every column: of two workers adding columns at once the second's patch fails
(HTTP 412) or, where the ETag is not checked (bqemulator), overwrites the first's, and the
next read shows what is still missing; a column that another worker added with the same type
is simply used. What BigQuery cannot do raises `SchemaMismatch` (reason ``schema_mismatch``,
naming the field), which the sink dead-letters: a field whose new column would be REQUIRED,
a value of a type no column can take, a field added meanwhile with another type. A value
that its existing column cannot take (a type change) is dead-lettered with the same reason
(`transforms.io.bigquery.rows.WrongType`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions
from google.cloud import bigquery

from transforms.errors import SinkRejected
from transforms.io.bigquery.client import bounded_retry
from transforms.schema import Field, Schema

__all__ = ["SCHEMA_MISMATCH", "SchemaMismatch", "add_fields", "infer_field"]

SCHEMA_MISMATCH = "schema_mismatch"
TIMEOUT = 30.0
_ATTEMPTS = 10  # reads and patches of the table when other workers keep changing it
_SCALARS = {bool: "BOOLEAN", int: "INTEGER", float: "FLOAT", str: "STRING"}


class SchemaMismatch(SinkRejected):
    """A change of the table's schema that BigQuery cannot make; the message names the field."""

    reason = SCHEMA_MISMATCH


def infer_field(name: str, value: Any, declared: Schema | None = None) -> Field:
    """Returns the NULLABLE column for a new field.

    Args:
        name: the field's name.
        value: its value in the row: a bool, int, float or str gives BOOLEAN, INTEGER, FLOAT
            or STRING; a list of them a REPEATED column of that type; an object (or a list of
            objects or of mixed values) a JSON column.
        declared: the pipeline's schema; a field it declares keeps its declared type.

    Raises:
        SchemaMismatch: the declared field is REQUIRED (a new column cannot be), or the
            value is ``None`` or an empty list (no type to infer).
    """
    spec = declared.get(name) if declared is not None else None
    if spec is not None:
        if spec.mode == "REQUIRED":
            raise SchemaMismatch(f"{name}: a new column cannot be REQUIRED; declare it NULLABLE")
        return spec
    if isinstance(value, list):
        kinds = {_SCALARS.get(type(item)) for item in value}
        if len(kinds) == 1 and None not in kinds:
            return Field(name, kinds.pop() or "JSON", "REPEATED")
        if not value:
            raise SchemaMismatch(f"{name}: an empty list gives no type for a new column")
        return Field(name, "JSON")
    if isinstance(value, Mapping):
        return Field(name, "JSON")
    kind = _SCALARS.get(type(value))
    if kind is None:
        raise SchemaMismatch(f"{name}: no column type for a value {value!r:.40}")
    return Field(name, kind)


def add_fields(
    client: bigquery.Client,
    table_ref: str,
    values: Mapping[str, Any],
    declared: Schema | None = None,
) -> Schema:
    """Adds the fields of ``values`` the table lacks as NULLABLE columns; returns its schema.

    Args:
        client: a BigQuery client.
        table_ref: ``project.dataset.table``.
        values: ``{new field: its value in the row}``; a ``None`` value adds nothing.
        declared: the pipeline's schema, for the types of fields it declares.

    Raises:
        SchemaMismatch: a column cannot be added (see `infer_field`), or exists with another
            type than the one this row needs.
    """
    wanted = [
        infer_field(name, value, declared) for name, value in values.items() if value is not None
    ]
    for _ in range(_ATTEMPTS):
        table = client.get_table(table_ref, timeout=TIMEOUT, retry=bounded_retry(TIMEOUT))
        current = {field.name: field for field in table.schema}
        missing = []
        for field in wanted:
            existing = current.get(field.name)
            if existing is None:
                missing.append(field)
            elif (existing.field_type, existing.mode) != (field.type, field.mode):
                raise SchemaMismatch(
                    f"{field.name}: the column is {existing.mode} {existing.field_type}, the "
                    f"value needs {field.mode} {field.type}"
                )
        if missing:
            table.schema = [
                *table.schema,
                *(bigquery.SchemaField.from_api_repr(f.to_bigquery()) for f in missing),
            ]
            try:  # the table's ETag makes the patch fail if another worker changed it since
                client.update_table(table, ["schema"], timeout=TIMEOUT)
            except (exceptions.PreconditionFailed, exceptions.Conflict):
                pass
            continue  # read again: the columns are there, or another patch won the race
        return Schema.from_bigquery([field.to_api_repr() for field in table.schema])
    raise SchemaMismatch(f"{table_ref}: the schema kept changing while adding {list(values)}")
