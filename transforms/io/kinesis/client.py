"""The Kinesis client: which stream, where, and its shards (`ListShards`) with their lineage."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from transforms.io.endpoint import Endpoint, EndpointError, redact

__all__ = ["CHECK_SECONDS", "Shard", "StreamTarget", "check_stream", "list_shards", "make_client"]

DEFAULT_TIMEOUT = 30.0
CHECK_SECONDS = 5.0
"""How long `check_stream` waits for Kinesis (one call, not retried)."""
# Answers that say the stream is there (throttled, or still being created): the check passes.
_THERE = frozenset({"LimitExceededException", "ProvisionedThroughputExceededException",
                    "ThrottlingException", "ResourceInUseException"})  # fmt: skip
_STREAM = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class StreamTarget:
    """Which stream, where: everything a worker needs to reach it (it holds no credentials).

    Attributes:
        stream: the stream name, case kept.
        region: the AWS region.
        endpoint_url: another endpoint, or ``None`` for AWS's own.
        where: the endpoint URI, for messages.
        timeout: connect and read timeout of each call, in seconds.
    """

    stream: str
    region: str
    endpoint_url: str | None
    where: str
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT) -> StreamTarget:
        """Reads the stream, region and endpoint of a ``kinesis://`` URI; raises `EndpointError`."""
        stream = endpoint.authority
        if endpoint.username is not None or endpoint.path not in ("", "/"):
            raise EndpointError(f"{endpoint}: expected kinesis://STREAM?region=R")
        if not _STREAM.fullmatch(stream):
            raise EndpointError(
                f"{endpoint}: {stream!r} is not a stream name: 1-128 letters, digits, _ . -"
            )
        region = endpoint.params.get("region") or boto3.session.Session().region_name
        if not region:
            raise EndpointError(f"{endpoint}: give region=R (no AWS region is configured)")
        endpoint_url = endpoint.params.get("endpoint") or None
        if endpoint_url is not None and urlsplit(endpoint_url).scheme not in ("http", "https"):
            raise EndpointError(f"{endpoint}: endpoint must be an http:// or https:// URL")
        return cls(stream, region, endpoint_url, str(endpoint), timeout)


def make_client(target: StreamTarget, retries: int = 10) -> Any:
    """Returns a boto3 Kinesis client for the target.

    Args:
        target: the stream.
        retries: the most calls botocore makes for one request (throttling, 5xx).

    Credentials come from boto3's default chain; with a loopback endpoint and no credentials
    found, dummy ones are used, since local servers accept any.
    """
    session = boto3.session.Session()
    config = botocore.config.Config(
        connect_timeout=target.timeout,
        read_timeout=target.timeout,
        retries={"mode": "standard", "total_max_attempts": retries},
    )
    dummy: dict[str, str] = {}
    local = target.endpoint_url is not None and _is_loopback(target.endpoint_url)
    if local and session.get_credentials() is None:
        dummy = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    return session.client(
        "kinesis",
        region_name=target.region,
        endpoint_url=target.endpoint_url,
        config=config,
        **dummy,
    )


def check_stream(target: StreamTarget) -> None:
    """Checks, with one ``ListShards`` call (the read's own), that the stream exists.

    Called where the graph is built, before anything runs
    (`transforms.io.kinesis.endpoints.KinesisSource`). A throttled call, or a stream still being
    created, passes: the stream is there, and the read waits for it.

    Raises:
        EndpointError: no such stream in the region, Kinesis did not answer within
            `CHECK_SECONDS`, no credentials were found, or they may not list the shards. The
            message names the URI and what to change; no credential is shown.

    """
    where, stream, region = target.where, target.stream, target.region
    client = make_client(dataclasses.replace(target, timeout=CHECK_SECONDS), retries=1)
    try:
        client.list_shards(StreamName=stream, MaxResults=1)
    except ClientError as error:
        details = error.response.get("Error", {})
        code = details.get("Code", "")
        if code in _THERE:
            return
        if code == "ResourceNotFoundException":
            raise EndpointError(
                f"{where}: no Kinesis stream {stream!r} in region {region}: check the name "
                f"(and region=), or create it first: aws kinesis create-stream --stream-name "
                f"{stream} --shard-count 1 --region {region}"
            ) from None
        raise EndpointError(
            f"{where}: cannot list the shards of Kinesis stream {stream!r} ({code}: "
            f"{redact(str(details.get('Message', '')))}): check the AWS credentials and that "
            "they may read the stream (kinesis:ListShards, kinesis:GetShardIterator, "
            "kinesis:GetRecords)"
        ) from None
    except NoCredentialsError:
        raise EndpointError(
            f"{where}: no AWS credentials found: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        ) from None
    except BotoCoreError as error:
        place = "endpoint=" if target.endpoint_url is not None else "region="
        raise EndpointError(
            f"{where}: could not reach Kinesis ({type(error).__name__}: "
            f"{redact(str(error))}; waited at most {CHECK_SECONDS:g}s): check {place} and that "
            "the service is up"
        ) from None
    finally:
        client.close()


class Shard(NamedTuple):
    """A shard as ``ListShards`` shows it.

    Attributes:
        shard_id: e.g. ``shardId-000000000003``.
        parents: its parent and adjacent parent (a merge), those that are set.
        closed: whether it has an ending sequence number (it was split or merged).
    """

    shard_id: str
    parents: tuple[str, ...]
    closed: bool


def list_shards(client: Any, stream: str) -> list[Shard]:
    """Returns every shard of the stream that is still kept, open or closed, in listing order."""
    shards: list[Shard] = []
    request: dict[str, Any] = {"StreamName": stream}
    while True:
        response = client.list_shards(**request)
        for shard in response["Shards"]:
            parents = tuple(
                shard[name] for name in ("ParentShardId", "AdjacentParentShardId") if name in shard
            )
            closed = "EndingSequenceNumber" in shard["SequenceNumberRange"]
            shards.append(Shard(shard["ShardId"], parents, closed))
        token = response.get("NextToken")
        if not token:
            return shards
        request = {"NextToken": token}


def shard_owner(shard: Shard, known: set[str]) -> str | None:
    """Returns the parent that reads ``shard`` after itself: its first parent still listed."""
    return next((parent for parent in shard.parents if parent in known), None)


def root_shards(shards: list[Shard]) -> list[str]:
    known = {shard.shard_id for shard in shards}
    return [shard.shard_id for shard in shards if shard_owner(shard, known) is None]


def owned_children(shards: list[Shard], parent: str) -> list[Shard]:
    known = {shard.shard_id for shard in shards}
    return [shard for shard in shards if shard_owner(shard, known) == parent]
