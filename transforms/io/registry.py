"""The one map from a name to what it names: sources, sinks and enrich references by scheme.

The catalog's pipelines are found the same way (`load` of a ``module:name`` target).

A new system is one module and one line in each table it takes part in, and a row in the runner
matrix (`transforms.io.runners`). Modules are imported only when their scheme is used, so a
pipeline that never touches BigQuery does not import its client.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from transforms.io.base import Sink, SinkContext, Source
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.redis.text import KeyTemplate

__all__ = [
    "LOOKUPS",
    "REFERENCES",
    "SINKS",
    "SOURCES",
    "load",
    "load_scheme",
    "make_loader",
    "make_sink",
    "make_source",
]

SOURCES = {
    "generator": "transforms.io.generator:GeneratorSource",
    "file": "transforms.io.files:FileSource",
    "pubsub": "transforms.io.pubsub.endpoints:PubSubSource",
    "kinesis": "transforms.io.kinesis.endpoints:KinesisSource",
    "kafka": "transforms.io.kafka.endpoints:KafkaSource",
    "bigquery": "transforms.io.bigquery.source:BigQuerySource",
}
SINKS = {
    "file": "transforms.io.files:FileSink",
    "stdout": "transforms.io.stdout:StdoutSink",
    "console": "transforms.io.console:ConsoleSink",
    "pubsub": "transforms.io.pubsub.write:PubSubSink",
    "kinesis": "transforms.io.kinesis.write:KinesisSink",
    "bigquery": "transforms.io.bigquery.sink:BigQuerySink",
    "bigquery-replica": "transforms.io.bigquery.replica:BigQueryReplicaSink",
    "redis": "transforms.io.redis.sink:RedisSink",
    "rediss": "transforms.io.redis.sink:RedisSink",
    "kafka": "transforms.io.kafka.endpoints:KafkaSink",
}
# Enrich references (`transforms.enrich.base.enrich_from_uri`): the loaders of whole
# reference tables, held in a side input, each with ``from_endpoint(endpoint, key)``...
REFERENCES = {
    "file": "transforms.enrich.loaders:JsonLinesLoader",
    "bigquery": "transforms.enrich.loaders:BigQueryLoader",
    "redis": "transforms.enrich.loaders:RedisHashLoader",
    "rediss": "transforms.enrich.loaders:RedisHashLoader",
}
# ... and the stores looked up record by record, each with ``from_endpoint(endpoint, settings)``.
LOOKUPS = {
    "redis": "transforms.enrich.redis_lookup:RedisLookup",
    "rediss": "transforms.enrich.redis_lookup:RedisLookup",
}


def load(target: str) -> Any:
    """Returns what a ``module:name`` target names (``transforms.io.files:FileSource``)."""
    module_name, name = target.split(":")
    return getattr(importlib.import_module(module_name), name)


def load_scheme(table: Mapping[str, str], endpoint: Endpoint, what: str) -> Any:
    """Returns what ``table`` registers for the scheme of ``endpoint``.

    Raises:
        EndpointError: no entry for the scheme; the message lists the known schemes, e.g.
            ``nosuch://x: no source for scheme 'nosuch'; known: file://, generator://...``.
    """
    target = table.get(endpoint.scheme)
    if target is None:
        known = ", ".join(f"{scheme}://" for scheme in sorted(table))
        raise EndpointError(f"{endpoint}: no {what} for scheme {endpoint.scheme!r}; known: {known}")
    return load(target)


def make_source(uri: str, max_payload_bytes: int | None = None) -> Source:
    """Returns the source named by ``uri``; raises `EndpointError` with the known schemes.

    ``max_payload_bytes``, when given, is the pipeline's payload size limit
    (`Source.max_payload_bytes`).
    """
    endpoint = Endpoint.parse(uri)
    source = load_scheme(SOURCES, endpoint, "source").from_endpoint(endpoint)
    if max_payload_bytes is not None:
        source.max_payload_bytes = max_payload_bytes
    return source


def make_sink(uri: str, context: SinkContext) -> Sink:
    """Returns the sink named by ``uri``; raises `EndpointError` with the known schemes."""
    endpoint = Endpoint.parse(uri)
    return load_scheme(SINKS, endpoint, "sink").from_endpoint(endpoint, context)


def make_loader(endpoint: Endpoint, key: KeyTemplate) -> Any:
    """Returns the loader of the reference table ``endpoint`` names, keyed by ``key``.

    The loader is a `transforms.enrich.loaders.Loader`; raises `EndpointError` with the
    known schemes, or for a URI its loader cannot use.
    """
    return load_scheme(REFERENCES, endpoint, "reference").from_endpoint(endpoint, key)
