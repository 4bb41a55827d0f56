"""The local servers: what each one is, where it keeps its files, and how clients reach it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
BIGQUERY_PROJECT = "local-project"
STATE_DIR_ENV = "PIPELINES_SERVICES_DIR"
REQUIRE_ENV = "PIPELINES_REQUIRE_SERVICES"
PIP_HINT = "pip install -e .[test]"
POLL_SECONDS = 0.2


class ServiceError(RuntimeError):
    """A server could not be started, is not installed, or its name is unknown."""


@dataclass(frozen=True)
class ServiceSpec:
    """What one local server is and how to reach it.

    Attributes:
        name: Short name used on the command line and in fixtures.
        host: Address the server binds to.
        port: Main TCP port of the server.
        requires: What must be installed for the server to run.
        install_hint: How to install what is missing.
        env_var: Environment variable under which clients find the endpoint.
        endpoint: Address clients connect to (a host:port, URL or bootstrap list).
        ready_timeout: Seconds to wait for the server to answer after start.
        process_marker: Text found in the server's command line, used to tell a live server
            from an unrelated process that reuses a stale PID.

    """

    name: str
    host: str
    port: int
    requires: str
    install_hint: str
    env_var: str
    endpoint: str
    ready_timeout: float
    process_marker: str


# Executables of the servers that are plain programs (console scripts or Debian binaries).
PROGRAMS = {"kafka": "noida-db", "kinesis": "moto_server", "redis": "redis-server"}
# Text found in each server's command line: its program, or the emulator's own name.
PROCESS_MARKERS = {**PROGRAMS, "pubsub": "pubsub-emulator", "bigquery": "bqemulator"}
# What each server needs installed, and how to install it.
NEEDS = {
    "pubsub": (
        "Java and the Google Cloud CLI's Pub/Sub emulator",
        "install the Google Cloud CLI (gcloud) with its Pub/Sub emulator",
    ),
    "kafka": ("noida-db (PyPI)", PIP_HINT),
    "kinesis": ("moto[server] (PyPI)", PIP_HINT),
    "bigquery": ("bqemulator and duckdb-extension-spatial (PyPI)", PIP_HINT),
    "redis": ("redis-server (Debian package)", "apt-get install redis-server"),
}


def _local(name: str, port: int, env_var: str, url: str, ready_timeout: float) -> ServiceSpec:
    """The spec of a server on `HOST`; ``url`` is its endpoint, ``{}`` standing for HOST:PORT."""
    requires, install_hint = NEEDS[name]
    return ServiceSpec(
        name=name,
        host=HOST,
        port=port,
        requires=requires,
        install_hint=install_hint,
        env_var=env_var,
        endpoint=url.format(f"{HOST}:{port}"),
        ready_timeout=ready_timeout,
        process_marker=PROCESS_MARKERS[name],
    )


SPECS: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        # name, port, the clients' variable, endpoint, seconds to wait for it to answer
        _local("pubsub", 8085, "PUBSUB_EMULATOR_HOST", "{}", 60.0),
        _local("kafka", 19093, "KAFKA_BOOTSTRAP_SERVERS", "{}", 30.0),
        _local("kinesis", 5055, "KINESIS_ENDPOINT_URL", "http://{}", 60.0),
        _local("bigquery", 9050, "BIGQUERY_EMULATOR_HOST", "http://{}", 90.0),
        _local("redis", 6390, "REDIS_URL", "redis://{}/0", 15.0),
    )
}
BIGQUERY_GRPC_PORT = 9060
# Variables a server sets beside its ``env_var``: the BigQuery emulator's Storage Write (gRPC).
EXTRA_ENV = {"bigquery": {"BIGQUERY_STORAGE_EMULATOR_HOST": f"{HOST}:{BIGQUERY_GRPC_PORT}"}}


# --------------------------------------------------------------------------------------------
# Paths


def state_dir() -> Path:
    """Return the folder that holds every server's data, log and PID files.

    Returns:
        ``$PIPELINES_SERVICES_DIR`` if set, else ``<repo>/.services``.

    """
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parents[3] / ".services"


def service_dir(name: str) -> Path:
    """Return the folder of one server (data folder, log, PID file)."""
    return state_dir() / spec_of(name).name


def log_file(name: str) -> Path:
    """Return the log file that receives the server's stdout and stderr."""
    return service_dir(name) / f"{name}.log"


def pid_file(name: str) -> Path:
    """Return the PID file of the server."""
    return service_dir(name) / f"{name}.pid"


def data_dir(name: str) -> Path:
    """Return the data folder of one server (wiped at each fresh start)."""
    return service_dir(name) / "data"


def spec_of(name: str) -> ServiceSpec:
    """Return the spec of a server; raise `ServiceError` naming the known ones."""
    try:
        return SPECS[name]
    except KeyError:
        known = ", ".join(SPECS)
        raise ServiceError(f"unknown service {name!r} (known: {known})") from None


def selected(names: Iterable[str] | None) -> list[ServiceSpec]:
    """Return the specs of the named servers, or of all of them for ``None``."""
    return list(SPECS.values()) if names is None else [spec_of(name) for name in names]


def services_required() -> bool:
    """Tell whether missing servers are errors (``CI`` set, or ``PIPELINES_REQUIRE_SERVICES=1``)."""
    return bool(os.environ.get("CI")) or os.environ.get(REQUIRE_ENV) == "1"
