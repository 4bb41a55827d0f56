"""Finding the servers' programs and building the command line that runs each one."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.devtools.services.specs import (
    BIGQUERY_GRPC_PORT,
    BIGQUERY_PROJECT,
    PROGRAMS,
    data_dir,
    log_file,
    pid_file,
    service_dir,
    spec_of,
)


def which(program: str) -> str | None:
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


def pubsub_jar() -> Path | None:
    """Return the Pub/Sub emulator's jar shipped with the gcloud CLI, or ``None``."""
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
    spec = spec_of(name)
    missing = f"{spec.requires} not found: {spec.install_hint}"
    if name == "pubsub":
        java = shutil.which("java")
        if java is None:
            return False, f"java not found: install a Java runtime and {spec.install_hint}"
        jar = pubsub_jar()
        return (True, f"{java} -jar {jar}") if jar else (False, missing)
    if name == "bigquery":
        program = which("bqemulator")
        extension = _spatial_extension()
        if program is None or extension is None:
            return False, missing
        return True, program
    program = which(PROGRAMS[name])
    return (True, program) if program else (False, missing)


# --------------------------------------------------------------------------------------------
# The command lines


def command(name: str) -> list[str]:
    """Build the command line that runs the server in the foreground (redis: daemonized)."""
    spec = spec_of(name)
    data = str(data_dir(name))
    if name == "pubsub":
        jar = pubsub_jar()
        java = shutil.which("java")
        assert jar is not None and java is not None  # checked by is_available
        return [java, "-jar", str(jar), f"--host={spec.host}", f"--port={spec.port}"]
    if name == "kafka":
        return [
            str(which(PROGRAMS["kafka"])),
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
        return [str(which(PROGRAMS["kinesis"])), "-H", spec.host, "-p", str(spec.port)]
    if name == "bigquery":
        return bigquery_command(spec.port, BIGQUERY_GRPC_PORT)
    return [
        str(which(PROGRAMS["redis"])),
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


def bigquery_command(rest_port: int, grpc_port: int) -> list[str]:
    """Build the command line of a BigQuery emulator (in memory) on 127.0.0.1.

    Args:
        rest_port: Port of its REST API.
        grpc_port: Port of its gRPC APIs (Storage Read and Write).

    """
    host = spec_of("bigquery").host
    return [
        str(which("bqemulator")),
        "start",
        "--rest-host",
        host,
        "--rest-port",
        str(rest_port),
        "--grpc-host",
        host,
        "--grpc-port",
        str(grpc_port),
        "--ephemeral",
        "--project",
        BIGQUERY_PROJECT,
    ]


def bigquery_home(folder: Path | None = None) -> Path:
    """Prepare the HOME of bqemulator so that DuckDB finds the spatial extension offline.

    DuckDB looks for extensions in ``$HOME/.duckdb/extensions/<version>/<platform>/`` and
    otherwise tries to download them, which fails offline and stops bqemulator from starting.

    Args:
        folder: The server's folder, which gets the HOME; ``None`` for the ``bigquery``
            server's. An emulator of one's own needs its own: the copy would overwrite the
            extension a running server has loaded.

    """
    extension = _spatial_extension()
    assert extension is not None  # checked by is_available
    home = (service_dir("bigquery") if folder is None else folder) / "home"
    target = home / ".duckdb" / "extensions" / extension.parent.name / _duckdb_platform()
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(extension, target / extension.name)
    return home
