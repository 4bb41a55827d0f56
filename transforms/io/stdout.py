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


def _print_json(block: list[Record]) -> None:
    lines = (msgspec.json.encode(record.data, enc_hook=str) + b"\n" for record in block)
    sys.stdout.write(b"".join(lines).decode("utf-8"))


class StdoutSink(Sink):
    """Prints blocks of records; printing does not fail per record: no dead-letter output."""

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__(endpoint, context)
        endpoint.check_params(frozenset())

    def expand(self, blocks: beam.PCollection) -> Any:
        counted = blocks | "Count" >> Count(self.context.counter, blocks=True)
        _ = counted | "Print" >> beam.Map(_print_json)
        return None
