"""The servers' processes: PID files, starting detached, stopping a process group, locks."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pipelines.devtools.services.probes import is_answering
from pipelines.devtools.services.programs import bigquery_home, command
from pipelines.devtools.services.specs import (
    POLL_SECONDS,
    ServiceError,
    data_dir,
    log_file,
    pid_file,
    service_dir,
    spec_of,
)

_STOP_GRACE_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1  # prctl option: the signal a child gets when its parent ends
# Popen objects of servers started by this interpreter, kept so that they are reaped when
# stopped (a zombie would still look alive to ``os.kill(pid, 0)``).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


def read_pid(name: str) -> int | None:
    """Return the PID written in the server's PID file, or ``None``."""
    try:
        return int(pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int, marker: str | None = None) -> bool:
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
    pid = read_pid(name)
    if pid is None:
        return None
    if pid_alive(pid, spec_of(name).process_marker):
        return pid
    pid_file(name).unlink(missing_ok=True)
    return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def reap(pid: int) -> None:
    """Wait for a server this interpreter started, so that it leaves no zombie."""
    with _CHILDREN_LOCK:
        child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=_STOP_GRACE_SECONDS)


def stop_pid(pid: int) -> None:
    """Stop a server's process group: SIGTERM, then SIGKILL after a grace period."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    if pid_alive(pid):
        _signal_group(pid, signal.SIGKILL)
    reap(pid)


def tail(path: Path, lines: int = 20) -> str:
    """Return the last ``lines`` lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold an exclusive lock on one server's folder (for concurrent ``up``/``down`` calls)."""
    folder = service_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _die_with_parent() -> None:
    """In a child before it runs its program: SIGKILL when the process that started it ends."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: list[str], cwd: Path, log: Path, env: dict[str, str], tied: bool = False
) -> subprocess.Popen[bytes]:
    """Start a program detached (its own session), its output to ``log``.

    Stop it with `stop_pid`, which also reaps it. A ``tied`` program (Linux) is also killed
    when this process ends, even by SIGKILL, when no finalizer runs.
    """
    with open(log, "wb") as output:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if tied and sys.platform == "linux" else None,
        )
    with _CHILDREN_LOCK:
        _CHILDREN[process.pid] = process
    return process


def launch(name: str) -> int:
    """Start the server detached and return its PID (written to its PID file)."""
    data = data_dir(name)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    env = dict(os.environ)
    if name == "bigquery":
        env["HOME"] = str(bigquery_home())
    log = log_file(name)
    process = spawn(command(name), data, log, env)
    if name != "redis":
        pid_file(name).write_text(f"{process.pid}\n")
        return process.pid
    # redis-server daemonizes: the launcher exits and the daemon writes its own PID file.
    code = process.wait(timeout=30)
    with _CHILDREN_LOCK:
        _CHILDREN.pop(process.pid, None)
    deadline = time.monotonic() + spec_of(name).ready_timeout
    while (pid := read_pid(name)) is None:
        if code != 0 or time.monotonic() > deadline:
            raise ServiceError(
                f"redis: redis-server exited with code {code} and wrote no PID file; "
                f"see {log}:\n{tail(log)}"
            )
        time.sleep(POLL_SECONDS)
    return pid


def await_answer(
    probe: Callable[[], bool], pid: int, timeout: float, label: str, log: Path
) -> None:
    """Wait until ``probe()`` is true; stop the server and raise `ServiceError` if it never is.

    Args:
        probe: Tells whether the server answers.
        pid: The server's process (and process group).
        timeout: Seconds to wait.
        label: Names the server in the error.
        log: The server's log, whose end the error shows.

    """
    deadline = time.monotonic() + timeout
    while not probe():
        if not pid_alive(pid):
            reap(pid)
            raise ServiceError(f"{label}: server exited during start; see {log}:\n{tail(log)}")
        if time.monotonic() > deadline:
            stop_pid(pid)
            raise ServiceError(
                f"{label}: server did not answer within {timeout:.0f} s; see {log}:\n{tail(log)}"
            )
        time.sleep(POLL_SECONDS)


def wait_ready(name: str, pid: int, timeout: float) -> None:
    """Wait until the server answers; stop it and raise `ServiceError` if it never does."""
    try:
        await_answer(lambda: is_answering(name), pid, timeout, name, log_file(name))
    except ServiceError:
        pid_file(name).unlink(missing_ok=True)
        raise
