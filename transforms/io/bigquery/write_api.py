"""The Storage Write API's calls, as the ``bigquery://`` sink uses them.

One place knows the gRPC client: `make_write_client` connects to real BigQuery (Application
Default Credentials) or, with an address (the URI's ``storage_endpoint``, else the environment
variable ``BIGQUERY_STORAGE_EMULATOR_HOST``), to an emulator over an insecure channel. `append`
sends one ``AppendRows`` request of serialized protocol buffer rows and sorts its answer:

* written: returns ``[]``;
* some rows refused (``row_errors``; BigQuery then writes none of the request's rows): returns
  ``[(index, reason), ...]``;
* the offset was already written (``ALREADY_EXISTS``): raises `AlreadyWritten`; the offset is
  past the stream's end, or the stream is finalized or gone: raises `NotAppended`;
* a transient failure (unavailable, internal, throttled, aborted, deadline): raises the
  matching ``google.api_core.exceptions`` error, which `is_transient` accepts;
* anything else raises, failing the bundle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import grpc
from google.api_core import exceptions
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
    BigQueryWriteGrpcTransport,
)
from google.protobuf import descriptor_pb2

from transforms.io.bigquery.client import STORAGE_EMULATOR_ENV
from transforms.io.bigquery.client import is_transient as is_rest_transient

__all__ = [
    "DEFAULT_STREAM",
    "AlreadyWritten",
    "NotAppended",
    "append",
    "create_committed_stream",
    "is_transient",
    "make_write_client",
    "stream_parent",
]

DEFAULT_STREAM = "_default"
REQUEST_TIMEOUT = 60.0
_TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
_NOT_APPENDED_CODES = frozenset(
    {grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}
)
_CODES = {code.value[0]: code for code in grpc.StatusCode}


class AlreadyWritten(Exception):
    """The request's offset is already written in its committed stream: the rows landed."""


class NotAppended(Exception):
    """The rows were not appended: offset past the stream's end, stream finalized or gone."""


def make_write_client(storage_endpoint: str | None) -> BigQueryWriteClient:
    """Returns a Storage Write client.

    Args:
        storage_endpoint: an emulator's gRPC ``HOST:PORT``; ``None`` reads
            ``BIGQUERY_STORAGE_EMULATOR_HOST``, and when that is unset too the client talks
            to real BigQuery with Application Default Credentials.
    """
    address = storage_endpoint or os.environ.get(STORAGE_EMULATOR_ENV) or None
    if address is None:
        return BigQueryWriteClient()
    channel = grpc.insecure_channel(address.split("://", 1)[-1])
    return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))


def stream_parent(table: str) -> str:
    """``project.dataset.table`` as the API names it: ``projects/p/datasets/d/tables/t``."""
    project, dataset, name = table.split(".")
    return f"projects/{project}/datasets/{dataset}/tables/{name}"


def is_transient(error: BaseException) -> bool:
    """`transforms.io.bigquery.client.is_transient`, plus gRPC's aborted and unavailable."""
    if isinstance(error, (exceptions.Aborted, exceptions.ServiceUnavailable)):
        return True
    return is_rest_transient(error)


def create_committed_stream(client: BigQueryWriteClient, table: str) -> str:
    """Creates a COMMITTED stream on the table (rows visible as appended); returns its name.

    The sink never finalizes its streams: a finalized stream refuses every append, so the
    write log could no longer tell a written offset from an unwritten one.
    """
    stream = client.create_write_stream(
        parent=stream_parent(table),
        write_stream=types.WriteStream(type_=types.WriteStream.Type.COMMITTED),
        timeout=REQUEST_TIMEOUT,
    )
    return stream.name


def append(
    client: BigQueryWriteClient,
    stream: str,
    descriptor: descriptor_pb2.DescriptorProto,
    rows: Sequence[bytes],
    offset: int | None = None,
) -> list[tuple[int, str]]:
    """Appends serialized rows to a stream, at ``offset`` when given (committed streams).

    Returns:
        ``[]`` when the rows were written; else the refused rows, ``[(index, reason)]``, and
        then none of the request's rows was written.

    Raises:
        AlreadyWritten: ``offset`` is already written.
        NotAppended: ``offset`` is past the stream's end, or the stream is finalized or gone.
        google.api_core.exceptions.GoogleAPICallError: the call failed (`is_transient` tells
            whether it may succeed again).
    """
    request = types.AppendRowsRequest(write_stream=stream)
    request.proto_rows = types.AppendRowsRequest.ProtoData(
        writer_schema=types.ProtoSchema(proto_descriptor=descriptor),
        rows=types.ProtoRows(serialized_rows=list(rows)),
    )
    if offset is not None:
        request.offset = offset
    try:
        responses = list(
            client.append_rows(iter([request]), retry=None, timeout=REQUEST_TIMEOUT)  # type: ignore[arg-type]
        )
    except exceptions.NotFound as error:
        raise NotAppended(str(error)) from None
    response = responses[-1]
    if response.row_errors:
        return [
            (error.index, f"{error.code.name}: {error.message}") for error in response.row_errors
        ]
    if "error" not in response:
        return []
    code = _CODES.get(response.error.code, grpc.StatusCode.UNKNOWN)
    message = response.error.message
    if code == grpc.StatusCode.ALREADY_EXISTS:
        raise AlreadyWritten(message)
    if code in _NOT_APPENDED_CODES or code == grpc.StatusCode.OK:
        # bqemulator answers an append to a finalized stream with an empty error (code 0).
        raise NotAppended(message or "the stream takes no more rows")
    if code in _TRANSIENT_CODES:
        raise exceptions.from_grpc_status(code, message)
    raise exceptions.from_grpc_status(code, f"{stream}: {message}")
