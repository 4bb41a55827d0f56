"""Manage the real local servers that the tests and the local demo talk to.

Five servers stand in for the cloud systems of the suite, each bound to 127.0.0.1:

* ``pubsub``: Google's Pub/Sub emulator (a jar shipped with the gcloud CLI).
* ``kafka``: ``noida-db``, a single-node server speaking the Kafka protocol.
* ``kinesis``: ``moto_server``, which implements the Kinesis API.
* ``bigquery``: ``bqemulator``, a DuckDB-backed BigQuery REST and gRPC emulator.
* ``redis``: Debian's ``redis-server``.

Each server gets a folder ``<state>/<name>/`` holding its data folder, its log file and its PID
file. The state directory is ``<repo>/.services/`` unless the environment variable
``PIPELINES_SERVICES_DIR`` names another one. Servers run detached (own session), so they outlive
the process that started them, and are stopped by PID with their whole process group.

A fresh start wipes the server's data folder, so every run begins empty; a server that is
already running and answering is left alone.

Command line (``python -m pipelines.devtools services ...`` calls :func:`main`)::

    services up [NAME ...]
    services down [NAME ...]
    services status [NAME ...]
    services env [NAME ...]     # export lines for the running servers: eval "$(...)"
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from pipelines.devtools.services.probes import is_answering, tcp_open
from pipelines.devtools.services.processes import launch, locked, running_pid, stop_pid, wait_ready
from pipelines.devtools.services.programs import is_available
from pipelines.devtools.services.specs import (
    EXTRA_ENV,
    SPECS,
    ServiceError,
    ServiceSpec,
    pid_file,
    selected,
    services_required,
    spec_of,
)
from pipelines.framework.options import ArgumentParser


def _up_one(name: str, timeout: float | None) -> None:
    spec = spec_of(name)
    available, message = is_available(name)
    if not available:
        raise ServiceError(f"{name}: not installed: {message}")
    wait = spec.ready_timeout if timeout is None else timeout
    with locked(name):
        pid = running_pid(name)
        if pid is None:
            if tcp_open(spec.port):
                if is_answering(name):
                    return  # started outside this tool: leave it alone
                raise ServiceError(
                    f"{name}: port {spec.host}:{spec.port} is taken by another program"
                )
            pid = launch(name)
        wait_ready(name, pid, wait)


def up(names: Sequence[str] | None = None, timeout: float | None = None) -> None:
    """Start servers (all by default) in parallel and wait until each answers.

    A server that is already running is left alone (and waited on if it is still starting);
    a stale PID file is removed first.

    Args:
        names: Services to start; ``None`` for all of :data:`SPECS`.
        timeout: Seconds to wait for each server; ``None`` for each spec's ``ready_timeout``.

    Raises:
        ServiceError: A server is unknown, not installed, or did not become ready. The message
            names each failing server and its log file.

    """
    specs = selected(names)
    with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
        futures = [pool.submit(_up_one, spec.name, timeout) for spec in specs]
    errors = [str(exc) for future in futures if (exc := future.exception()) is not None]
    if errors:
        raise ServiceError("\n".join(errors))


def down(names: Sequence[str] | None = None) -> None:
    """Stop servers (all by default) by PID with their process group and remove PID files.

    Servers that are not running, or that were started outside this tool, are left alone.

    Args:
        names: Services to stop; ``None`` for all of :data:`SPECS`.

    """
    specs = selected(names)

    def stop(spec: ServiceSpec) -> None:
        with locked(spec.name):
            pid = running_pid(spec.name)
            if pid is not None:
                stop_pid(pid)
            pid_file(spec.name).unlink(missing_ok=True)

    with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
        list(pool.map(stop, specs))


# --------------------------------------------------------------------------------------------
# Status and endpoints


def status(names: Sequence[str] | None = None) -> dict[str, str]:
    """Describe each server.

    Args:
        names: Services to describe; ``None`` for all of :data:`SPECS`.

    Returns:
        Service name to ``"running (pid N)"``, ``"running (not started by this tool)"``,
        ``"stopped"`` or ``"not installed: <what to install>"``.

    """
    report: dict[str, str] = {}
    for spec in selected(names):
        available, message = is_available(spec.name)
        pid = running_pid(spec.name)
        if pid is not None:
            report[spec.name] = f"running (pid {pid})"
        elif tcp_open(spec.port, timeout=0.5) and is_answering(spec.name):
            report[spec.name] = "running (not started by this tool)"
        elif not available:
            report[spec.name] = f"not installed: {message}"
        else:
            report[spec.name] = "stopped"
    return report


def is_running(name: str) -> bool:
    """Tell whether a server is running, whether or not this tool started it."""
    return status([name])[name].startswith("running")


def endpoints() -> dict[str, str]:
    """Return the environment variables that point clients at the local servers.

    Returns:
        ``PUBSUB_EMULATOR_HOST``, ``KAFKA_BOOTSTRAP_SERVERS``, ``KINESIS_ENDPOINT_URL``,
        ``BIGQUERY_EMULATOR_HOST``, ``BIGQUERY_STORAGE_EMULATOR_HOST`` and ``REDIS_URL``
        with their values.

    """
    found = {spec.env_var: spec.endpoint for spec in SPECS.values()}
    for extra in EXTRA_ENV.values():
        found.update(extra)
    return found


def env_lines(names: Sequence[str] | None = None) -> list[str]:
    """Return ``export VAR=value`` lines pointing clients at the running servers.

    As ``gcloud beta emulators pubsub env-init`` does, for every selected server that is
    running: ``eval "$(python -m pipelines.devtools services env)"`` sets them in a shell.

    Args:
        names: Services to include; ``None`` for all of :data:`SPECS`.

    Returns:
        ``["export PUBSUB_EMULATOR_HOST=127.0.0.1:8085", ...]``, running servers only.

    """
    return [
        f"export {var}={shlex.quote(value)}"
        for spec in selected(names)
        if is_running(spec.name)
        for var, value in {spec.env_var: spec.endpoint, **EXTRA_ENV.get(spec.name, {})}.items()
    ]


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str]) -> int:
    """Run ``services up|down|status|env [NAME ...]``, printing one line per service.

    ``status`` shows each server's address and its variable; ``env`` prints only the
    ``export`` lines of the running servers, for ``eval``.

    ``up`` skips servers that are not installed (and fails for them when
    :func:`services_required`), and fails if an installed server does not start.

    Args:
        argv: Arguments after ``services``.

    Returns:
        Process exit code: 0 on success, 1 if a server failed, 2 on a usage error.

    """
    parser = ArgumentParser(
        prog="python -m pipelines.devtools services",
        description="Start, stop or inspect the local servers used by tests and the demo; "
        'env prints the export lines of the running ones: eval "$(python -m '
        'pipelines.devtools services env)".',
    )
    parser.add_argument(
        "action",
        choices=("up", "down", "status", "env"),
        help="start, stop, show (addresses and variables) or print export lines",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(SPECS)}")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    unknown = [name for name in args.names if name not in SPECS]
    if unknown:
        print(
            f"error: unknown service(s): {', '.join(unknown)} (known: {', '.join(SPECS)})",
            file=sys.stderr,
        )
        return 2
    names: list[str] = args.names or list(SPECS)
    if args.action == "env":
        lines = env_lines(names)
        print("\n".join(lines))
        if not lines:
            print(
                "# no server is running: python -m pipelines.devtools services up", file=sys.stderr
            )
        return 0
    code = 0
    if args.action == "up":
        wanted = [name for name in names if is_available(name)[0]]
        missing = [name for name in names if name not in wanted]
        if missing and services_required():
            code = 1
        try:
            up(wanted)
        except ServiceError as exc:
            print(exc, file=sys.stderr)
            code = 1
    elif args.action == "down":
        down(names)
    for name, state in status(names).items():
        where = ""
        if state.startswith("running"):
            spec = SPECS[name]
            where = f" at {spec.endpoint} ({spec.env_var})"
        print(f"{name}: {state}{where}")
    return code
