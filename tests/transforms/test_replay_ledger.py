"""The ledger of replays on the real Redis server: one send per dead letter, retries allowed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.transforms.test_replay import ORIGINAL, _as_written, _letter
from transforms.blocks import Block
from transforms.io.endpoint import Endpoint
from transforms.message import Message, Origin, Record
from transforms.replay import decode
from transforms.replay_ledger import Ledger, _ClaimFn


def _read_back(path: str, line: int) -> Record:
    """The dead letter of ORIGINAL as a file source reads it back from ``path``, ``line``."""
    letter = decode(_as_written(_letter(ORIGINAL)))
    return Record(letter, Message(b"", {}, Origin("file", path=path, line=line)))


def _claim(redis_url: str, prefix: str, run_id: str, block: list[Record]) -> list[Any]:
    claim = _ClaimFn(Ledger(Endpoint.parse(f"{redis_url}?prefix={prefix}:")), run_id, False)
    claim.setup()
    try:
        return [record for kept in claim.process(Block(block)) for record in kept]
    finally:
        claim.teardown()


@pytest.mark.usefixtures("redis_db")
def test_copies_of_a_dead_letter_are_sent_once_and_a_retry_is_sent_again(
    redis_server: Any, unique_name: str
) -> None:
    first = _read_back("/dlq/part-1.jsonl", 4)
    copy = _read_back("/dlq/part-2.jsonl", 9)  # the same dead letter, written twice
    url = redis_server.endpoint
    # Two copies in one block of one run: the first is claimed, the copy is not sent.
    assert _claim(url, unique_name, "run-1", [first, copy]) == [first]
    # The runner retries that bundle: the same copy, claimed by this run, is sent again.
    assert _claim(url, unique_name, "run-1", [first]) == [first]
    # The copy in a later bundle of the same run, and any copy in another run: not sent.
    assert _claim(url, unique_name, "run-1", [copy]) == []
    assert _claim(url, unique_name, "run-2", [first]) == []
