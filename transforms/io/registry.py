"""The one map from URI scheme to source and sink: a new system is one module and one line here.

Modules are imported only when their scheme is used, so a pipeline that never touches BigQuery
does not import its client.
"""

from __future__ import annotations

import importlib
from typing import Any

from transforms.io.base import Sink, SinkContext, Source
from transforms.io.endpoint import Endpoint, EndpointError

__all__ = ["SINKS", "SOURCES", "make_sink", "make_source"]

SOURCES = {
    "generator": "transforms.io.generator:GeneratorSource",
    "file": "transforms.io.files:FileSource",
    "pubsub": "transforms.io.pubsub:PubSubSource",
    "kinesis": "transforms.io.kinesis:KinesisSource",
    "kafka": "transforms.io.kafka:KafkaSource",
}
SINKS = {
    "file": "transforms.io.files:FileSink",
    "stdout": "transforms.io.stdout:StdoutSink",
    "console": "transforms.io.console:ConsoleSink",
    "pubsub": "transforms.io.pubsub:PubSubSink",
    "kinesis": "transforms.io.kinesis:KinesisSink",
    "bigquery": "transforms.io.bigquery:BigQuerySink",
    "bigquery-replica": "transforms.io.bigquery_replica:BigQueryReplicaSink",
    "redis": "transforms.io.redis:RedisSink",
    "rediss": "transforms.io.redis:RedisSink",
    "kafka": "transforms.io.kafka:KafkaSink",
}


def _load(table: dict[str, str], endpoint: Endpoint, role: str) -> Any:
    target = table.get(endpoint.scheme)
    if target is None:
        known = ", ".join(f"{scheme}://" for scheme in sorted(table))
        raise EndpointError(f"{endpoint}: no {role} for scheme {endpoint.scheme!r}; known: {known}")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_source(uri: str, max_payload_bytes: int | None = None) -> Source:
    """Returns the source named by ``uri``; raises `EndpointError` with the known schemes.

    ``max_payload_bytes``, when given, is the pipeline's payload size limit
    (`Source.max_payload_bytes`).
    """
    endpoint = Endpoint.parse(uri)
    source = _load(SOURCES, endpoint, "source").from_endpoint(endpoint)
    if max_payload_bytes is not None:
        source.max_payload_bytes = max_payload_bytes
    return source


def make_sink(uri: str, context: SinkContext) -> Sink:
    """Returns the sink named by ``uri``; raises `EndpointError` with the known schemes."""
    endpoint = Endpoint.parse(uri)
    return _load(SINKS, endpoint, "sink").from_endpoint(endpoint, context)
