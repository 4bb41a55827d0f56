"""Fixtures of the pipeline tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipelines.live_bigquery import Run


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    """The `Run` subprocesses a test starts; any still alive at its end is killed."""
    started: list[Run] = []
    yield started
    for run in started:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
