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

Command line (``python -m pipelines services ...`` calls :func:`main`)::

    services up [NAME ...]
    services down [NAME ...]
    services status [NAME ...]
    services env [NAME ...]     # export lines for the running servers: eval "$(...)"
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.client
import importlib.util
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipelines.framework.options import ArgumentParser

HOST = "127.0.0.1"
BIGQUERY_PROJECT = "local-project"
STATE_DIR_ENV = "PIPELINES_SERVICES_DIR"
REQUIRE_ENV = "PIPELINES_REQUIRE_SERVICES"

_PIP_HINT = "pip install -e .[test]"
_STOP_GRACE_SECONDS = 5.0
_POLL_SECONDS = 0.2


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
            install_hint=_PIP_HINT,
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
            install_hint=_PIP_HINT,
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
            install_hint=_PIP_HINT,
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
_PROGRAMS = {"kafka": "noida-db", "kinesis": "moto_server", "redis": "redis-server"}

# Popen objects of servers started by this interpreter, kept so that they are reaped when
# stopped (a zombie would still look alive to ``os.kill(pid, 0)``).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


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
    return Path(__file__).resolve().parents[2] / ".services"


def service_dir(name: str) -> Path:
    """Return the folder of one server (data folder, log, PID file)."""
    return state_dir() / _spec(name).name


def log_file(name: str) -> Path:
    """Return the log file that receives the server's stdout and stderr."""
    return service_dir(name) / f"{name}.log"


def pid_file(name: str) -> Path:
    """Return the PID file of the server."""
    return service_dir(name) / f"{name}.pid"


def _data_dir(name: str) -> Path:
    return service_dir(name) / "data"


def _spec(name: str) -> ServiceSpec:
    try:
        return SPECS[name]
    except KeyError:
        known = ", ".join(SPECS)
        raise ServiceError(f"unknown service {name!r} (known: {known})") from None


def _selected(names: Iterable[str] | None) -> list[ServiceSpec]:
    return list(SPECS.values()) if names is None else [_spec(name) for name in names]


# --------------------------------------------------------------------------------------------
# Finding the programs


def _which(program: str) -> str | None:
    """Find a console script next to the running interpreter first, then on PATH."""
    beside = Path(sys.executable).parent / program
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(program)


@functools.cache
def _gcloud_sdk_root() -> Path:
    """Ask gcloud where its SDK lives (slow, about a second, so asked once per process)."""
    gcloud = shutil.which("gcloud")
    if gcloud:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            result = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            root = result.stdout.strip()
            if result.returncode == 0 and root:
                return Path(root)
    return Path("/usr/lib/google-cloud-sdk")


def _pubsub_jar() -> Path | None:
    jars = sorted(
        (_gcloud_sdk_root() / "platform" / "pubsub-emulator" / "lib").glob(
            "cloud-pubsub-emulator-*-all.jar"
        )
    )
    return jars[-1] if jars else None


def _spatial_extension() -> Path | None:
    """Find ``spatial.duckdb_extension`` inside the ``duckdb_extension_spatial`` package.

    The package lays it out as ``extensions/<duckdb version>/spatial.duckdb_extension``.
    """
    spec = importlib.util.find_spec("duckdb_extension_spatial")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("extensions/v*/spatial.duckdb_extension"))
        if found:
            return found[-1]
    return None


def _duckdb_platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    return f"{sys.platform.rstrip('0123456789')}_{arch.get(machine, machine)}"


def is_available(name: str) -> tuple[bool, str]:
    """Tell whether the program of a server is installed.

    Args:
        name: Service name, one of :data:`SPECS`.

    Returns:
        ``(True, description of what was found)`` or ``(False, what to install)``.

    """
    spec = _spec(name)
    missing = f"{spec.requires} not found: {spec.install_hint}"
    if name == "pubsub":
        java = shutil.which("java")
        if java is None:
            return False, f"java not found: install a Java runtime and {spec.install_hint}"
        jar = _pubsub_jar()
        return (True, f"{java} -jar {jar}") if jar else (False, missing)
    if name == "bigquery":
        program = _which("bqemulator")
        extension = _spatial_extension()
        if program is None or extension is None:
            return False, missing
        return True, program
    program = _which(_PROGRAMS[name])
    return (True, program) if program else (False, missing)


# --------------------------------------------------------------------------------------------
# Processes


def _read_pid(name: str) -> int | None:
    try:
        return int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int, marker: str | None = None) -> bool:
    """Tell whether ``pid`` is a live (non-zombie) process whose command line holds ``marker``."""
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path("/proc") / str(pid)
    try:
        if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        cmdline = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return True  # no /proc: trust the signal check
    return marker is None or marker in cmdline


def running_pid(name: str) -> int | None:
    """Return the PID of the server if its PID file names a live server process.

    A PID file that names no live server process is stale and is removed.
    """
    pid = _read_pid(name)
    if pid is None:
        return None
    if _pid_alive(pid, _spec(name).process_marker):
        return pid
    pid_file(name).unlink(missing_ok=True)
    return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    with _CHILDREN_LOCK:
        child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=_STOP_GRACE_SECONDS)


def _stop_pid(pid: int) -> None:
    """Stop a server's process group: SIGTERM, then SIGKILL after a grace period."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
    if _pid_alive(pid):
        _signal_group(pid, signal.SIGKILL)
    _reap(pid)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Hold an exclusive lock on one server's folder (for concurrent ``up``/``down`` calls)."""
    folder = service_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Readiness probes


def _tcp_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _http_status(port: int, path: str, method: str = "GET", timeout: float = 2.0) -> int | None:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _redis_command(*words: str, timeout: float = 2.0) -> bytes:
    """Send one command in the Redis protocol and return the first reply line."""
    request = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((HOST, SPECS["redis"].port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


def _probe_pubsub() -> bool:
    return _http_status(SPECS["pubsub"].port, "/") == 200


def _probe_kafka() -> bool:
    if not _tcp_open(SPECS["kafka"].port):
        return False
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return True
    admin = AdminClient({"bootstrap.servers": SPECS["kafka"].endpoint, "log_level": 0})
    try:
        admin.list_topics(timeout=3)
    except Exception:  # noqa: BLE001 - any client error means "not ready yet"
        return False
    return True


def _probe_kinesis() -> bool:
    return _http_status(SPECS["kinesis"].port, "/moto-api/") == 200


def _probe_bigquery() -> bool:
    path = f"/bigquery/v2/projects/{BIGQUERY_PROJECT}/datasets"
    return _http_status(SPECS["bigquery"].port, path) == 200


def _probe_redis() -> bool:
    try:
        return _redis_command("PING") == b"+PONG"
    except OSError:
        return False


_PROBES: dict[str, Callable[[], bool]] = {
    "pubsub": _probe_pubsub,
    "kafka": _probe_kafka,
    "kinesis": _probe_kinesis,
    "bigquery": _probe_bigquery,
    "redis": _probe_redis,
}


def is_answering(name: str) -> bool:
    """Tell whether the server answers a real protocol call on its port right now."""
    return _PROBES[_spec(name).name]()


# --------------------------------------------------------------------------------------------
# Starting


def _command(name: str) -> list[str]:
    """Build the command line that runs the server in the foreground (redis: daemonized)."""
    spec = _spec(name)
    data = str(_data_dir(name))
    if name == "pubsub":
        jar = _pubsub_jar()
        java = shutil.which("java")
        assert jar is not None and java is not None  # checked by is_available
        return [java, "-jar", str(jar), f"--host={spec.host}", f"--port={spec.port}"]
    if name == "kafka":
        return [
            str(_which(_PROGRAMS["kafka"])),
            "start",
            "--host",
            spec.host,
            "--only",
            "kafka",
            "--kafka-port",
            str(spec.port),
            "--data-dir",
            data,
        ]
    if name == "kinesis":
        return [str(_which(_PROGRAMS["kinesis"])), "-H", spec.host, "-p", str(spec.port)]
    if name == "bigquery":
        return [
            str(_which("bqemulator")),
            "start",
            "--rest-host",
            spec.host,
            "--rest-port",
            str(spec.port),
            "--grpc-host",
            spec.host,
            "--grpc-port",
            str(BIGQUERY_GRPC_PORT),
            "--ephemeral",
            "--project",
            BIGQUERY_PROJECT,
        ]
    return [
        str(_which(_PROGRAMS["redis"])),
        "--port",
        str(spec.port),
        "--bind",
        spec.host,
        "--daemonize",
        "yes",
        "--save",
        "",
        "--appendonly",
        "no",
        "--pidfile",
        str(pid_file(name)),
        "--logfile",
        str(log_file(name)),
        "--dir",
        data,
    ]


def _bigquery_home() -> Path:
    """Prepare the HOME of bqemulator so that DuckDB finds the spatial extension offline.

    DuckDB looks for extensions in ``$HOME/.duckdb/extensions/<version>/<platform>/`` and
    otherwise tries to download them, which fails offline and stops bqemulator from starting.
    """
    extension = _spatial_extension()
    assert extension is not None  # checked by is_available
    home = service_dir("bigquery") / "home"
    target = home / ".duckdb" / "extensions" / extension.parent.name / _duckdb_platform()
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(extension, target / extension.name)
    return home


def _launch(name: str) -> int:
    """Start the server detached and return its PID (written to its PID file)."""
    data = _data_dir(name)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    env = dict(os.environ)
    if name == "bigquery":
        env["HOME"] = str(_bigquery_home())
    log = log_file(name)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            _command(name),
            cwd=data,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if name != "redis":
        with _CHILDREN_LOCK:
            _CHILDREN[process.pid] = process
        pid_file(name).write_text(f"{process.pid}\n")
        return process.pid
    # redis-server daemonizes: the launcher exits and the daemon writes its own PID file.
    code = process.wait(timeout=30)
    deadline = time.monotonic() + _spec(name).ready_timeout
    while (pid := _read_pid(name)) is None:
        if code != 0 or time.monotonic() > deadline:
            raise ServiceError(
                f"redis: redis-server exited with code {code} and wrote no PID file; "
                f"see {log}:\n{_tail(log)}"
            )
        time.sleep(_POLL_SECONDS)
    return pid


def _wait_ready(name: str, pid: int, timeout: float) -> None:
    log = log_file(name)
    deadline = time.monotonic() + timeout
    while not is_answering(name):
        if not _pid_alive(pid):
            _reap(pid)
            pid_file(name).unlink(missing_ok=True)
            raise ServiceError(f"{name}: server exited during start; see {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            _stop_pid(pid)
            pid_file(name).unlink(missing_ok=True)
            raise ServiceError(
                f"{name}: server did not answer within {timeout:.0f} s; see {log}:\n{_tail(log)}"
            )
        time.sleep(_POLL_SECONDS)


def _up_one(name: str, timeout: float | None) -> None:
    spec = _spec(name)
    available, message = is_available(name)
    if not available:
        raise ServiceError(f"{name}: not installed: {message}")
    wait = spec.ready_timeout if timeout is None else timeout
    with _locked(name):
        pid = running_pid(name)
        if pid is None:
            if _tcp_open(spec.port):
                if is_answering(name):
                    return  # started outside this tool: leave it alone
                raise ServiceError(
                    f"{name}: port {spec.host}:{spec.port} is taken by another program"
                )
            pid = _launch(name)
        _wait_ready(name, pid, wait)


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
    specs = _selected(names)
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
    specs = _selected(names)

    def stop(spec: ServiceSpec) -> None:
        with _locked(spec.name):
            pid = running_pid(spec.name)
            if pid is not None:
                _stop_pid(pid)
            pid_file(spec.name).unlink(missing_ok=True)

    with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
        list(pool.map(stop, specs))


# --------------------------------------------------------------------------------------------
# Status, endpoints and resets


def status(names: Sequence[str] | None = None) -> dict[str, str]:
    """Describe each server.

    Args:
        names: Services to describe; ``None`` for all of :data:`SPECS`.

    Returns:
        Service name to ``"running (pid N)"``, ``"running (not started by this tool)"``,
        ``"stopped"`` or ``"not installed: <what to install>"``.

    """
    report: dict[str, str] = {}
    for spec in _selected(names):
        available, message = is_available(spec.name)
        pid = running_pid(spec.name)
        if pid is not None:
            report[spec.name] = f"running (pid {pid})"
        elif _tcp_open(spec.port, timeout=0.5) and is_answering(spec.name):
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
    running: ``eval "$(python -m pipelines services env)"`` sets them in a shell.

    Args:
        names: Services to include; ``None`` for all of :data:`SPECS`.

    Returns:
        ``["export PUBSUB_EMULATOR_HOST=127.0.0.1:8085", ...]``, running servers only.

    """
    return [
        f"export {var}={shlex.quote(value)}"
        for spec in _selected(names)
        if is_running(spec.name)
        for var, value in {spec.env_var: spec.endpoint, **EXTRA_ENV.get(spec.name, {})}.items()
    ]


def reset_redis() -> None:
    """Delete every key of the local Redis (``FLUSHALL``).

    Raises:
        ServiceError: Redis did not acknowledge the flush.

    """
    reply = _redis_command("FLUSHALL")
    if reply != b"+OK":
        raise ServiceError(f"redis: FLUSHALL answered {reply!r}")


def reset_kinesis() -> None:
    """Delete every stream of the local moto server (``POST /moto-api/reset``).

    Raises:
        ServiceError: The server did not accept the reset.

    """
    code = _http_status(SPECS["kinesis"].port, "/moto-api/reset", method="POST", timeout=10.0)
    if code != 200:
        raise ServiceError(f"kinesis: POST /moto-api/reset answered {code}")


def services_required() -> bool:
    """Tell whether missing servers are errors (``CI`` set, or ``PIPELINES_REQUIRE_SERVICES=1``)."""
    return bool(os.environ.get("CI")) or os.environ.get(REQUIRE_ENV) == "1"


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
        prog="python -m pipelines services",
        description="Start, stop or inspect the local servers used by tests and the demo; "
        'env prints the export lines of the running ones: eval "$(python -m pipelines '
        'services env)".',
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
            print("# no server is running: python -m pipelines services up", file=sys.stderr)
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
