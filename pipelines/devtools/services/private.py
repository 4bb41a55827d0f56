"""A BigQuery emulator of one's own, on free ports, for a check that must not share one.

The ``bigquery`` server is shared by every test. A check that may leave it unusable (see
CONTRIBUTING.md: bqemulator deadlocks when a REST call reaches its database while a Storage
Write append runs) starts its own with `private_bigquery`: same program and command line,
in memory, in a folder of its own (data, HOME, log), stopped with its process group on exit
(and killed if the process that started it dies first).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipelines.devtools.services.probes import bigquery_answers, free_ports
from pipelines.devtools.services.processes import await_answer, spawn, stop_pid
from pipelines.devtools.services.programs import bigquery_command, bigquery_home, is_available
from pipelines.devtools.services.specs import HOST, ServiceError, spec_of

__all__ = ["PrivateBigQuery", "private_bigquery"]


@dataclass(frozen=True)
class PrivateBigQuery:
    """A running emulator of one's own.

    Attributes:
        endpoint: Its REST address, ``http://127.0.0.1:PORT`` (a sink's ``endpoint``).
        storage_endpoint: Its Storage Write address, ``127.0.0.1:PORT`` (``storage_endpoint``).
        log: Its log file: one JSON line per request it served.
        pid: Its process (and process group).

    """

    endpoint: str
    storage_endpoint: str
    log: Path
    pid: int


@contextlib.contextmanager
def private_bigquery(folder: Path, timeout: float | None = None) -> Iterator[PrivateBigQuery]:
    """Run a BigQuery emulator of one's own on free ports while the block runs.

    Args:
        folder: Its folder (created): the working folder, HOME and ``bigquery.log``.
        timeout: Seconds to wait for it to answer; ``None`` for the ``bigquery`` spec's.

    Raises:
        ServiceError: It is not installed, or did not answer in time (the message shows the
            end of its log).

    """
    available, message = is_available("bigquery")
    if not available:
        raise ServiceError(f"bigquery: not installed: {message}")
    folder.mkdir(parents=True, exist_ok=True)
    rest, grpc = free_ports(2)
    log = folder / "bigquery.log"
    env = {**os.environ, "HOME": str(bigquery_home(folder))}
    pid = spawn(bigquery_command(rest, grpc), folder, log, env, tied=True).pid
    try:
        wait = spec_of("bigquery").ready_timeout if timeout is None else timeout
        await_answer(lambda: bigquery_answers(rest), pid, wait, "private bigquery", log)
        yield PrivateBigQuery(f"http://{HOST}:{rest}", f"{HOST}:{grpc}", log, pid)
    finally:
        stop_pid(pid)
