"""Pub/Sub names in ``pubsub://`` URIs: ``projects/P/subscriptions/S``, ``projects/P/topics/T``."""

from __future__ import annotations

import re

from apache_beam.io.gcp.pubsub import PROJECT_ID_REGEXP

from transforms.io.endpoint import Endpoint, EndpointError

_RESOURCE = re.compile(
    r"projects/(?P<project>[^/]+)/(?P<kind>topics|subscriptions)/(?P<name>[^/]+)"
)
# Beam's rule for project ids (ReadFromPubSub refuses others) and Pub/Sub's for topic and
# subscription ids.
_PROJECT = re.compile(PROJECT_ID_REGEXP)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._~+%-]{2,254}")


def resource_path(endpoint: Endpoint, kind: str) -> str:
    """Return ``projects/P/<kind>/N`` from a ``pubsub://`` URI; raise `EndpointError` if bad."""
    example = f"pubsub://projects/PROJECT/{kind}/NAME"
    if endpoint.port is not None or endpoint.username is not None:
        raise EndpointError(f"{endpoint}: no host, port or user here; use {example}")
    path = f"{endpoint.host}{endpoint.path}".rstrip("/")
    match = _RESOURCE.fullmatch(path)
    if match is None:
        raise EndpointError(f"{endpoint}: expected {example}")
    project, found, name = match["project"], match["kind"], match["name"]
    if found != kind:
        if kind == "subscriptions":
            raise EndpointError(
                f"{endpoint}: reading needs a subscription, not a topic: create one on topic "
                f"{name!r} and give pubsub://projects/{project}/subscriptions/SUBSCRIPTION"
            )
        raise EndpointError(
            f"{endpoint}: publishing needs a topic, not a subscription: give "
            f"pubsub://projects/{project}/topics/TOPIC"
        )
    if not _PROJECT.fullmatch(project):
        raise EndpointError(
            f"{endpoint}: {project!r} is not a valid project id: 6-63 lower-case letters, digits "
            "and - : . starting with a letter"
        )
    if not _NAME.fullmatch(name) or name.startswith("goog"):
        raise EndpointError(
            f"{endpoint}: {name!r} is not a valid Pub/Sub id: 3-255 characters, starting with a "
            "letter, of letters, digits and - _ . ~ + %, not starting with 'goog'"
        )
    return path


def optional_param(endpoint: Endpoint, name: str) -> str | None:
    """Return a URI parameter that names a field, or ``None``; raise `EndpointError` if empty."""
    value = endpoint.params.get(name)
    if value == "":
        raise EndpointError(f"{endpoint}: parameter {name} is empty; give a name or leave it out")
    return value
