"""What the Kafka source and sink share: the broker connection a ``kafka://`` URI names.

``kafka://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]/TOPIC?security_protocol=SASL_SSL
&sasl_mechanism=PLAIN&sasl_username=U&password_env=VAR`` gives the bootstrap servers (the raw
host list), the topic and the security settings. The password comes from the URI's userinfo,
``password_env=VAR`` or ``password_secret=projects/P/secrets/S[/versions/V]``; a reference is
resolved on the worker (see `transforms.secrets`), so its value never enters the job graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from transforms.io.endpoint import Endpoint, EndpointError
from transforms.secrets import password_reference, resolve_secret

__all__ = [
    "CONNECTION_PARAMS",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "KafkaConnection",
]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
CONNECTION_PARAMS = frozenset(
    {"security_protocol", "sasl_mechanism", "sasl_username", "password_env", "password_secret"}
)
CLIENT_ID = "beam-streaming-suite"

_BROKER = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


@dataclass(frozen=True)
class KafkaConnection:
    """The broker connection of a ``kafka://`` URI; picklable, the password never shown.

    Attributes:
        where: the URI with credentials redacted, for messages.
        bootstrap: the bootstrap servers, ``host1:9092,host2:9092``.
        topic: the topic.
        security_protocol: one of `SECURITY_PROTOCOLS`.
        sasl_mechanism: one of `SASL_MECHANISMS` for the ``SASL_*`` protocols, else ``None``.
        username: the SASL user name, if any.
        password: the password given in the URI itself, if any.
        password_ref: ``env:VAR`` or a Secret Manager name to read the password from, if any.

    """

    where: str
    bootstrap: str
    topic: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_ref: str | None = None

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint) -> KafkaConnection:
        """Reads the connection of ``endpoint``; raises `EndpointError` naming the fix."""
        example = "kafka://HOST:PORT[,HOST:PORT...]/TOPIC"
        brokers = endpoint.authority.split(",")
        if not endpoint.authority or not all(_BROKER.fullmatch(b) for b in brokers):
            raise EndpointError(
                f"{endpoint}: name the bootstrap servers as HOST:PORT, comma-separated: {example}"
            )
        topic = endpoint.path.strip("/")
        if not topic:
            raise EndpointError(f"{endpoint}: name the topic: {example}")
        if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
            raise EndpointError(
                f"{endpoint}: {topic!r} is not a valid Kafka topic: 1-249 letters, digits, "
                "'.', '_' or '-'"
            )
        protocol = endpoint.params.get("security_protocol", "PLAINTEXT").upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise EndpointError(
                f"{endpoint}: security_protocol must be one of {list(SECURITY_PROTOCOLS)}"
            )
        username = _username(endpoint)
        password_ref = password_reference(endpoint)
        has_password = endpoint.password is not None or password_ref is not None
        sasl = protocol.startswith("SASL_")
        if not sasl:
            if username is not None or has_password or "sasl_mechanism" in endpoint.params:
                raise EndpointError(
                    f"{endpoint}: a user name, password or sasl_mechanism needs "
                    "security_protocol=SASL_SSL (or SASL_PLAINTEXT)"
                )
            return cls(str(endpoint), endpoint.authority, topic, protocol)
        mechanism = endpoint.params.get("sasl_mechanism", "PLAIN").upper()
        if mechanism not in SASL_MECHANISMS:
            raise EndpointError(
                f"{endpoint}: sasl_mechanism must be one of {list(SASL_MECHANISMS)}"
            )
        if username is None or not has_password:
            raise EndpointError(
                f"{endpoint}: {protocol} needs a user name (sasl_username=U or U@ in the URI) "
                "and a password (password_env=VAR, password_secret=projects/... or the URI)"
            )
        return cls(
            where=str(endpoint),
            bootstrap=endpoint.authority,
            topic=topic,
            security_protocol=protocol,
            sasl_mechanism=mechanism,
            username=username,
            password=endpoint.password,
            password_ref=password_ref,
        )

    def client_config(self) -> dict[str, Any]:
        """Returns the librdkafka settings of the connection, the password resolved.

        Call it where the client is made (on the worker): a password reference is read then.

        Raises:
            SecretError: the password reference cannot be resolved.

        """
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
            "client.id": CLIENT_ID,
        }
        if self.sasl_mechanism is not None:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.username
            config["sasl.password"] = self.resolve_password()
        return config

    def resolve_password(self) -> str | None:
        """Returns the password: the URI's, or the one its reference names."""
        if self.password_ref is not None:
            return resolve_secret(self.password_ref)
        return self.password


def _username(endpoint: Endpoint) -> str | None:
    given = endpoint.params.get("sasl_username")
    if given is not None and endpoint.username is not None:
        raise EndpointError(f"{endpoint}: give the user name once: in the URI or sasl_username")
    if given == "":
        raise EndpointError(f"{endpoint}: sasl_username is empty")
    return given if given is not None else endpoint.username
