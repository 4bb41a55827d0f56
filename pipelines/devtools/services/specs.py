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


SPECS: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec(
            name="pubsub",
            host=HOST,
            port=8085,
            requires="Java and the Google Cloud CLI's Pub/Sub emulator",
            install_hint="install the Google Cloud CLI (gcloud) with its Pub/Sub emulator",
            env_var="PUBSUB_EMULATOR_HOST",
            endpoint=f"{HOST}:8085",
            ready_timeout=60.0,
            process_marker="pubsub-emulator",
        ),
        ServiceSpec(
            name="kafka",
            host=HOST,
            port=19093,
            requires="noida-db (PyPI)",
            install_hint=PIP_HINT,
            env_var="KAFKA_BOOTSTRAP_SERVERS",
            endpoint=f"{HOST}:19093",
            ready_timeout=30.0,
            process_marker="noida-db",
        ),
        ServiceSpec(
            name="kinesis",
            host=HOST,
            port=5055,
            requires="moto[server] (PyPI)",
            install_hint=PIP_HINT,
            env_var="KINESIS_ENDPOINT_URL",
            endpoint=f"http://{HOST}:5055",
            ready_timeout=60.0,
            process_marker="moto_server",
        ),
        ServiceSpec(
            name="bigquery",
            host=HOST,
            port=9050,
            requires="bqemulator and duckdb-extension-spatial (PyPI)",
            install_hint=PIP_HINT,
            env_var="BIGQUERY_EMULATOR_HOST",
            endpoint=f"http://{HOST}:9050",
            ready_timeout=90.0,
            process_marker="bqemulator",
        ),
        ServiceSpec(
            name="redis",
            host=HOST,
            port=6390,
            requires="redis-server (Debian package)",
            install_hint="apt-get install redis-server",
            env_var="REDIS_URL",
            endpoint=f"redis://{HOST}:6390/0",
            ready_timeout=15.0,
            process_marker="redis-server",
        ),
    )
}
BIGQUERY_GRPC_PORT = 9060
# Variables a server sets beside its ``env_var``: the BigQuery emulator's Storage Write (gRPC).
EXTRA_ENV = {"bigquery": {"BIGQUERY_STORAGE_EMULATOR_HOST": f"{HOST}:{BIGQUERY_GRPC_PORT}"}}
# Executables of the servers that are plain programs (console scripts or Debian binaries).
PROGRAMS = {"kafka": "noida-db", "kinesis": "moto_server", "redis": "redis-server"}


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
