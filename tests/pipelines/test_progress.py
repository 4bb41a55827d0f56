"""Progress on a terminal: a bar for bounded runs, a status line for live ones; quiet when piped.

(A piped run shows none: ``test_cli.py::test_run_file_to_file_accounts_for_every_line``.)

The command line runs with its standard error on a pseudo-terminal, as in a shell; the idle
live run also bounds the CPU the process uses while no event comes (a bound on work done while
waiting, not a timing).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.framework.progress import Bar, Status, show_progress
from transforms.metrics import BYTES_READ, DEAD_LETTERED, LOCAL, READ

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TICK = os.sysconf("SC_CLK_TCK")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class PtyRun:
    """``python -m pipelines ARGS`` with standard error on a pseudo-terminal, read as it comes."""

    def __init__(self, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        env = {**os.environ, "TERM": "xterm", "COLUMNS": "200"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipelines", *args],
            stdout=subprocess.PIPE, stderr=slave, cwd=ROOT, env=env,
        )  # fmt: skip
        os.close(slave)
        self._master = master
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # the child closed the terminal
                return
            if not data:
                return
            self._chunks.append(data)

    @property
    def screen(self) -> str:
        """What reached the terminal so far, without colours and cursor moves."""
        return ANSI.sub("", b"".join(self._chunks).decode(errors="replace"))

    def wait_for(self, pattern: str, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while not re.search(pattern, self.screen):
            assert self.process.poll() is None, self.screen
            assert time.monotonic() < deadline, self.screen
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def finish(self) -> str:
        stdout, _ = self.process.communicate(timeout=120)
        self._reader.join(timeout=10)
        os.close(self._master)
        return stdout.decode()


def test_the_bar_shows_bytes_records_rate_and_dead_letters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    stream = Terminal()
    bar = Bar(stream, total_bytes=2_000_000)
    bar.start()
    LOCAL.add(READ, 1200)
    LOCAL.add(BYTES_READ, 1_000_000)
    LOCAL.add(DEAD_LETTERED, 7)
    bar.sample()
    bar.stop()
    shown = ANSI.sub("", stream.getvalue()).splitlines()[-1]
    assert "50%" in shown and "1.0/2.0 MB" in shown
    assert "1,200 records" in shown and "records/s" in shown
    assert "7 dead letters" in shown


def test_the_status_line_shows_counts_rates_and_watermark() -> None:
    status = Status(Terminal(), "aggregated")
    line = status.line({READ: 300, "aggregated": 290, DEAD_LETTERED: 10},
                       {READ: 100, "aggregated": 90}, 2.0, 1764064800.0)  # fmt: skip
    assert line == (
        "read 300 (100/s) · aggregated 290 (100/s) · dead-lettered 10 (5/s) · "
        "watermark 10:00:00 UTC"
    )


def test_nothing_is_shown_when_not_on_a_terminal() -> None:
    piped = io.StringIO()

    class Config:
        class source:  # noqa: N801 (a stand-in for the config's source)
            bounded = True

    with show_progress(Config(), "written", None, False, stream=piped) as attach:
        attach(None)
    assert piped.getvalue() == ""


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "in.jsonl"
    lines = [json.dumps({"event_id": f"e{i}", "ts": 1764064800 + i}) for i in range(3000)]
    path.write_text("\n".join([*lines, "{not json", "[1]"]) + "\n")
    return path


def test_a_bounded_run_shows_its_final_bar_on_a_terminal(events: Path, tmp_path: Path) -> None:
    run = PtyRun(
        "run", "events_to_bigquery", f"--source=file://{events}", f"--sink=file://{tmp_path}/o",
        f"--dead_letter=file://{tmp_path}/d",
    )  # fmt: skip
    report = run.finish()
    assert run.process.returncode == 0, run.screen
    assert "read" in report and "balanced" in report
    final = run.screen.strip().splitlines()[-1].split("\r")[-1]
    size = events.stat().st_size / 1e3
    assert "Reading" in final and "100%" in final and f"{size:.1f}/{size:.1f} kB" in final
    assert "3,002 records" in final and "records/s" in final and "2 dead letters" in final


@pytest.fixture(scope="module")
def idle_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PtyRun, float, str]]:
    """A live run whose source has one event, then none for 100 s: ``(run, cpu share, report)``.

    The CPU share is the process's CPU time over 4 s of wall time while it waits, measured
    from one second after its status line showed the event written.
    """
    out = tmp_path_factory.mktemp("idle")
    run = PtyRun(
        "run", "events_to_bigquery", "--source=generator://events?rate=0.01",
        f"--sink=file://{out}/o", f"--dead_letter=file://{out}/d", "--max_seconds=120",
    )  # fmt: skip
    try:
        run.wait_for(r"written 1 \(")
        time.sleep(1.0)
        cpu, wall = run.cpu_seconds(), time.monotonic()
        time.sleep(4.0)
        share = (run.cpu_seconds() - cpu) / (time.monotonic() - wall)
        run.process.send_signal(signal.SIGINT)
        report = run.finish()
    finally:
        if run.process.poll() is None:
            run.process.kill()
    yield run, share, report


def test_a_live_run_with_no_input_uses_little_cpu(idle_run: tuple[PtyRun, float, str]) -> None:
    _, share, _ = idle_run
    assert share < 0.1, f"{share:.0%} of a core while idle"


def test_a_live_run_shows_a_status_line(idle_run: tuple[PtyRun, float, str]) -> None:
    run, _, report = idle_run
    assert run.process.returncode == 128 + signal.SIGINT, run.screen
    final = run.screen.strip().splitlines()[-1].split("\r")[-1]
    assert re.search(r"read 1 \(\d+/s\) · written 1 \(\d+/s\) · dead-lettered 0 \(0/s\)", final)
    assert re.search(r"watermark \d\d:\d\d:\d\d UTC", final)
    assert "stopped by SIGINT" in report
