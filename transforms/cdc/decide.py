"""The rule that decides each change of a key, and the counters of its decisions.

A key's state is its last applied sequence and whether that change was a delete (`KeyState`).
Given it, a change with a greater sequence is applied; an equal one is a duplicate
(``dropped.cdc_duplicate``); a smaller one is stale (``dropped.cdc_stale``). Applied changes are
counted in ``applied``. `transforms.cdc.compact`, which keeps only each key's latest change,
counts here too: the others as duplicates or as superseded (``dropped.cdc_superseded``).
"""

from __future__ import annotations

from typing import NamedTuple

from transforms import metrics
from transforms.cdc.change import Change
from transforms.metrics import DROPPED, ReasonCounters

__all__ = [
    "APPLIED",
    "DUPLICATE",
    "STALE",
    "SUPERSEDED",
    "DecisionCounters",
    "KeyState",
    "apply_change",
    "decide",
]

APPLIED = metrics.APPLIED
DUPLICATE = "cdc_duplicate"
STALE = "cdc_stale"
SUPERSEDED = "cdc_superseded"


class KeyState(NamedTuple):
    """What is kept per key: the last applied sequence, and whether that change was a delete."""

    sequence: tuple[int, ...]
    deleted: bool


def decide(state: KeyState | None, sequence: tuple[int, ...], delete: bool) -> tuple[str, KeyState]:
    """Decides one change of a key, given the key's state.

    Args:
        state: the key's state, ``None`` when nothing was applied (or its marker expired).
        sequence: the change's sequence, e.g. ``(24023200, 24023264)``.
        delete: whether the change is a delete.

    Returns:
        ``(decision, state after)``: ``decision`` is `APPLIED`, `DUPLICATE` or `STALE`.
    """
    if state is not None:
        if sequence == state.sequence:
            return DUPLICATE, state
        if sequence < state.sequence:
            return STALE, state
    return APPLIED, KeyState(sequence, delete)


def apply_change(state: KeyState | None, change: Change) -> tuple[str, KeyState]:
    """Decides one change of a key, given the key's state (`decide` for a `Change`)."""
    return decide(state, change.sequence, change.op == "delete")


class DecisionCounters:
    """The counters of the decisions: ``applied`` and ``dropped.<reason>``.

    Create it in a DoFn's ``setup`` (Beam metrics are bound to the running step).
    """

    def __init__(self) -> None:
        self._applied = metrics.counter(APPLIED)
        self._dropped = ReasonCounters(DROPPED)

    def count(self, decision: str, n: int = 1) -> None:
        """Adds ``n`` changes decided ``decision``."""
        if decision == APPLIED:
            self._applied.inc(n)
        else:
            self._dropped.inc(decision, n)
