"""``events_to_bigquery``: raw events from any source into a table, failures to a dead letter.

source -> Parse -> sink
             `--> (parse failures + sink rejections) -> dead letter
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from pipelines.catalog import PipelineSpec
from pipelines.options import COMMON_OPTIONS
from pipelines.spine import PARSE_OPTIONS, SpineConfig, read_and_parse, write_dead_letters

__all__ = ["PIPELINE", "build"]

NAME = "events_to_bigquery"


def configure(values: dict[str, Any]) -> SpineConfig:
    """Validates the options of this pipeline."""
    return SpineConfig.from_options(NAME, values)


def build(pipeline: beam.Pipeline, config: SpineConfig) -> None:
    """Adds source -> Parse -> sink, with every failure dead-lettered."""
    records, parse_errors = read_and_parse(pipeline, config)
    sink_errors = records | "Write" >> config.sink
    write_dead_letters(config, [parse_errors, sink_errors])


PIPELINE = PipelineSpec(
    name=NAME,
    description=(
        "Reads JSON events from a source, validates them against a schema, stamps their event "
        "time and writes them to BigQuery (or files, Pub/Sub, stdout). Every record that fails "
        "to parse or that the sink rejects goes to the dead-letter sink with its original bytes."
    ),
    options=COMMON_OPTIONS + PARSE_OPTIONS,
    configure=configure,
    build=build,
)
