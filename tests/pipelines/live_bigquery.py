"""Live runs of events_to_bigquery (Pub/Sub emulator -> streaming DirectRunner -> BigQuery
emulator), watched through the run's own counters.

The BigQuery emulator can deadlock when a query reaches it while a Storage Write append runs
(CONTRIBUTING.md, quirks), so these tests never query a table while a run writes: they wait
until the run's counters say its rows and dead letters are written, cancel it, and only then
read the tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from google.cloud.pubsub_v1 import PublisherClient

from pipelines.catalog import get_pipeline
from pipelines.framework.run import build_pipeline
from tests.polling import wait_for
from transforms.io.live import live_direct_runner
from transforms.metrics import counter_totals

DEADLINE_S = 120.0
ROOT = Path(__file__).resolve().parents[2]

Counters = dict[str, int]


def rows(client: bigquery.Client, table: str) -> list[dict[str, object]]:
    """Every row of ``table`` (none when it does not exist)."""
    try:
        return [dict(row) for row in client.query(f"SELECT * FROM `{table}`").result(timeout=30)]
    except NotFound:
        return []


def run_live(
    argv: list[str],
    topic: str,
    publish: list[tuple[bytes, dict[str, str]]],
    done: Callable[[Counters], bool],
    wake: Callable[[], bytes],
) -> tuple[list[str], Counters]:
    """Runs events_to_bigquery on the stream until ``done(counters)``, then cancels it.

    Args:
        argv: the pipeline's options.
        topic: the topic its subscription reads; ``publish`` is sent there once it runs.
        publish: ``(payload, attributes)`` of each message.
        done: whether the run's counters (``written``, ``written_dead_letters``...) show that
            all it should write is written.
        wake: a payload published while the cancel waits, so that the pending pull returns.

    Returns:
        The published messages' ids and the run's final counters.
    """
    with live_direct_runner():
        pipeline, _ = build_pipeline(get_pipeline("events_to_bigquery"), argv)
        result = pipeline.run()
        publisher = PublisherClient()
        try:
            ids = [publisher.publish(topic, data, **attrs).result() for data, attrs in publish]
            wait_for(lambda: done(_counters(result)), "events_to_bigquery to write", every_s=0.5)
        finally:
            cancelling = threading.Thread(target=result.cancel)
            cancelling.start()
            while cancelling.is_alive():
                publisher.publish(topic, wake()).result()
                cancelling.join(timeout=0.5)
        return ids, counter_totals(result.metrics())


def _counters(result: object) -> Counters:
    try:
        return counter_totals(result.metrics())  # type: ignore[attr-defined]
    except RuntimeError:  # a counter appeared while they were read: the next poll has it
        return {}


class Run:
    """One ``python -m pipelines run events_to_bigquery`` subprocess, its output in a file."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipelines", "run", "events_to_bigquery", *argv],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=DEADLINE_S)

    def output(self) -> str:
        return self.log.read_text()
