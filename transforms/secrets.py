"""Secrets named by reference, resolved where they are used: on the worker, never in the graph.

A reference is one of:

* ``env:VAR``: the value of environment variable ``VAR`` on the worker;
* ``projects/P/secrets/S/versions/V`` (or ``projects/P/secrets/S``, meaning ``versions/latest``):
  a Google Secret Manager secret version, read with Application Default Credentials.

Sinks keep the reference in their pipeline graph and call `resolve_secret` in ``DoFn.setup``, so
a secret value is never pickled into a job graph nor shown in a template's parameters.
Messages of `SecretError` name the reference, never the value.
"""

from __future__ import annotations

import os
import re
from typing import Any

from transforms.io.endpoint import Endpoint, EndpointError

__all__ = ["SecretError", "check_reference", "password_reference", "resolve_secret"]

ENV_PREFIX = "env:"
DEFAULT_TIMEOUT = 30.0

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_VERSION = re.compile(r"projects/[^/\s]+/secrets/[^/\s]+(?:/versions/[^/\s]+)?")


class SecretError(ValueError):
    """A secret reference that is malformed or cannot be resolved; the value is never shown."""


def check_reference(reference: str) -> None:
    """Checks the form of a reference without resolving it (for graph construction).

    Raises:
        SecretError: ``reference`` is neither ``env:VAR`` nor a Secret Manager secret name.

    """
    if reference.startswith(ENV_PREFIX):
        if not _ENV_NAME.fullmatch(reference[len(ENV_PREFIX) :]):
            raise SecretError(f"{reference!r}: env: must be followed by a variable name")
    elif not _SECRET_VERSION.fullmatch(reference):
        raise SecretError(
            f"{reference!r} is not a secret reference: expected env:VAR or "
            "projects/PROJECT/secrets/SECRET[/versions/VERSION]"
        )


def resolve_secret(reference: str, *, client: Any = None, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Returns the secret a reference names.

    Args:
        reference: ``env:VAR`` or ``projects/P/secrets/S[/versions/V]``.
        client: a ``secretmanager.SecretManagerServiceClient`` to use; by default one is created
            (with Application Default Credentials) for this call and closed after it.
        timeout: seconds to wait for Secret Manager.

    Returns:
        The secret as text (a Secret Manager payload is decoded as UTF-8).

    Raises:
        SecretError: the reference is malformed, the variable is unset, or Secret Manager did
            not return the secret (the cause is chained).

    """
    check_reference(reference)
    if reference.startswith(ENV_PREFIX):
        name = reference[len(ENV_PREFIX) :]
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"{reference!r}: environment variable {name} is not set")
        return value
    name = reference if "/versions/" in reference else f"{reference}/versions/latest"
    from google.cloud import secretmanager  # only workers that read a secret need the client

    own_client = client is None
    if own_client:
        client = secretmanager.SecretManagerServiceClient()
    try:
        response = client.access_secret_version(name=name, timeout=timeout)
        return response.payload.data.decode("utf-8")
    except Exception as error:
        raise SecretError(f"{name}: cannot read the secret: {error}") from error
    finally:
        if own_client:
            client.transport.close()


def password_reference(endpoint: Endpoint) -> str | None:
    """Returns where a worker reads an endpoint's password from, if its URI says.

    ``password_env=VAR`` gives ``env:VAR`` and ``password_secret=projects/...`` the Secret
    Manager name; a password in the URI itself gives ``None`` (the caller uses it directly).

    Raises:
        EndpointError: the password is given more than once, or the reference is malformed.
    """
    env = endpoint.params.get("password_env")
    secret = endpoint.params.get("password_secret")
    given = [source for source in (endpoint.password, env, secret) if source is not None]
    if len(given) > 1:
        raise EndpointError(
            f"{endpoint}: give the password once: in the URI, password_env or password_secret"
        )
    reference = secret if secret is not None else None if env is None else ENV_PREFIX + env
    if reference is not None:
        try:
            check_reference(reference)
        except SecretError as error:
            raise EndpointError(f"{endpoint}: {error}") from None
    return reference
