"""Waiting for something a server or a run does, with a deadline instead of a sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

DEADLINE_S = 120.0


def wait_for(
    condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S, every_s: float = 0.2
) -> None:
    """Polls ``condition`` every ``every_s`` seconds; fails the test after ``deadline_s``.

    Args:
        condition: true once what the test waits for has happened.
        what: the thing waited for, named in the failure.
        deadline_s: how long it may take.
        every_s: the pause between two polls.
    """
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(every_s)
