"""Source metadata as columns: where each written record's message came from, opt-in per sink.

A sink URI with ``metadata=true`` (``bigquery://`` and ``file://``) adds to each row the
coordinates of the message the record was parsed from (`transforms.message.Origin`) and the
message's attributes, as flat columns named ``_meta_<coordinate>``: one column per field of
`Origin`, so the names are stable and the same for every source, and a column a source does
not fill stays NULL. Flat columns rather than one RECORD: the BigQuery emulator cannot append
to a table with a RECORD column through the Storage Write API, and flat columns cluster and
filter simply.

`METADATA_SCHEMA` declares the columns, their types and what fills them (the README's table and
``terraform/schemas/source_metadata.json`` are generated from it).

Attributes are one JSON object column (text in a BigQuery row, an object in a JSON line) rather
than repeated key/value records, for the same reason as above; ``JSON_VALUE(_meta_attributes,
'$.name')`` reads one. Hostile values: a Kafka key or header value that is not UTF-8 arrives
from the source in base64, named by the attributes ``kafka.base64_key=true`` and
``kafka.base64_headers=h1,h2``, which are kept with the others, so nothing is lost. Nothing is
cut: a row whose attributes make it too large for the sink's requests is dead-lettered as
``row_too_large`` with its original message, attributes included. A record without a message
(an aggregate) gets no metadata columns (all NULL). The ``_meta_`` names are reserved: a schema
that declares one is refused when the sink is built, and a record field of that name is
replaced by the metadata.
"""

from __future__ import annotations

import json
from typing import Any

import apache_beam as beam

from transforms.blocks import Block
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.message import Origin, Record
from transforms.schema import Field, Schema

__all__ = [
    "METADATA_PARAM",
    "METADATA_SCHEMA",
    "PREFIX",
    "AddMetadata",
    "keeps_metadata",
    "metadata_columns",
    "row_with_metadata",
    "with_metadata",
]

PREFIX = "_meta_"
METADATA_PARAM = "metadata"
ATTRIBUTES = f"{PREFIX}attributes"
_TYPES = {"partition": "INTEGER", "offset": "INTEGER", "line": "INTEGER",
          "publish_time": "TIMESTAMP"}  # fmt: skip
_MEANINGS = {
    "system": "The source system: pubsub, kafka, kinesis, file, generator, bigquery.",
    "message_id": "Pub/Sub message id (generator: the event id).",
    "publish_time": "Pub/Sub publish time, Kafka record timestamp, Kinesis arrival time.",
    "topic": "Kafka topic.",
    "partition": "Kafka partition.",
    "offset": "Kafka offset (generator: the event's index).",
    "key": "Kafka key (base64 when kafka.base64_key), Pub/Sub ordering key, Kinesis key.",
    "stream": "Kinesis stream.",
    "shard": "Kinesis shard id.",
    "sequence": "Kinesis sequence number.",
    "path": "File path (bigquery source: the table).",
    "line": "File line, from 1 (bigquery source: the row number).",
}
_ATTRIBUTES_MEANING = (
    "Pub/Sub attributes, Kafka headers (base64 when named in kafka.base64_headers), Kinesis "
    "partition_key."
)


def _column(name: str) -> Field:
    return Field(f"{PREFIX}{name}", _TYPES.get(name, "STRING"), description=_MEANINGS[name])


METADATA_SCHEMA = Schema(
    (
        *(_column(name) for name in Origin._fields[:3]),
        Field(ATTRIBUTES, "JSON", description=_ATTRIBUTES_MEANING),
        *(_column(name) for name in Origin._fields[3:]),
    )
)
"""The metadata columns, in the order tables get them (after the record's own columns)."""


def keeps_metadata(endpoint: Endpoint) -> bool:
    """Whether a sink URI asks for the metadata columns (``metadata=true``; default false)."""
    return endpoint.flag(METADATA_PARAM, False)


def with_metadata(schema: Schema | None, endpoint: Endpoint) -> Schema | None:
    """Returns ``schema`` followed by the metadata columns (``None`` stays ``None``).

    Raises:
        EndpointError: the schema declares a ``_meta_`` field itself.
    """
    if schema is None:
        return None
    taken = [name for name in schema.names if name.startswith(PREFIX)]
    if taken:
        raise EndpointError(
            f"{endpoint}: with metadata=true the column names starting with {PREFIX} hold the "
            f"source's metadata, and the schema declares {taken}: rename those fields or drop "
            f"{METADATA_PARAM}=true"
        )
    return Schema(schema.fields + METADATA_SCHEMA.fields)


def metadata_columns(record: Record, attributes_as_text: bool) -> dict[str, Any]:
    """Returns the metadata columns of ``record`` that its source filled.

    Args:
        record: a record; ``record.origin`` is the message it was parsed from, or ``None``.
        attributes_as_text: give the attributes as JSON text (a BigQuery row's JSON column)
            rather than as a dict (a JSON line).

    Returns:
        ``{"_meta_system": "kafka", "_meta_topic": "t", "_meta_partition": 0,
        "_meta_offset": 42, "_meta_key": "k1", "_meta_publish_time": "2026-11-25T10:00:00.250Z",
        "_meta_attributes": {"h": "v"}}``; ``{}`` for a record without a message. Columns a
        source leaves unset, and attributes when there are none, are left out (NULL).
    """
    message = record.origin
    if message is None:
        return {}
    columns = {f"{PREFIX}{name}": value for name, value in message.origin.to_dict().items()}
    if message.attributes:
        attributes = dict(message.attributes)
        columns[ATTRIBUTES] = (
            json.dumps(attributes, ensure_ascii=False, sort_keys=True)
            if attributes_as_text
            else attributes
        )
    return columns


def row_with_metadata(record: Record, attributes_as_text: bool) -> dict[str, Any]:
    """Returns ``record.data`` followed by its metadata columns (which replace same names)."""
    return {**record.data, **metadata_columns(record, attributes_as_text)}


@beam.typehints.with_output_types(Block)
class _AddToBlock(beam.DoFn):
    def __init__(self, attributes_as_text: bool) -> None:
        self._as_text = attributes_as_text

    def process(self, block: list[Record]) -> Any:
        yield Block(
            [record._replace(data=row_with_metadata(record, self._as_text)) for record in block]
        )


class AddMetadata(beam.PTransform):
    """Blocks of `Record`s -> the same records with their metadata columns in ``data``.

    A record ``Record({"id": 1}, <a Kafka message>)`` becomes ``Record({"id": 1,
    "_meta_system": "kafka", "_meta_topic": "t", ...}, <the same message>)``: the original
    message stays, so a row the sink refuses is still dead-lettered with its original bytes.

    Args:
        attributes_as_text: the attributes as JSON text (BigQuery) or as an object (files).
    """

    def __init__(self, attributes_as_text: bool) -> None:
        super().__init__()
        self._as_text = attributes_as_text

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        return blocks | "AddMetadata" >> beam.ParDo(_AddToBlock(self._as_text))
