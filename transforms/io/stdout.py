"""``stdout://``: prints each record as one JSON line, for a quick look at a pipeline's output."""

from __future__ import annotations

import sys
from typing import Any

import apache_beam as beam
import msgspec

from transforms.io.base import Sink, SinkContext
from transforms.io.endpoint import Endpoint
from transforms.message import Record
from transforms.metrics import Count

__all__ = ["StdoutSink"]


def _print_json(record: Record) -> None:
    line = msgspec.json.encode(record.data, enc_hook=str).decode("utf-8")
    sys.stdout.write(line + "\n")


class StdoutSink(Sink):
    """Prints records; printing does not fail per record, so it has no dead-letter output."""

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__(endpoint, context)
        endpoint.check_params(frozenset())

    def expand(self, records: beam.PCollection) -> Any:
        if not self.context.dead_letter:
            records = records | "Count" >> Count(self.context.counter)
        _ = records | "Print" >> beam.Map(_print_json)
        return None
