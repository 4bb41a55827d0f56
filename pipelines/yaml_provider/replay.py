"""Dead letters replayed, as a Beam YAML transform: the steps of ``dlq_replay`` on rows.

``ReplayDeadLetters`` takes the rows Parse makes of dead letters read back (``schema: none``),
selects them, claims them in the ledger and plans them (`transforms.replay`,
`transforms.replay_ledger`), as the ``dlq_replay`` pipeline does; its outputs are written by
``WriteToEndpoint`` (``raw: true`` for the replays, ``schema: dead_letter`` for the parked)::

    - type: ReplayDeadLetters
      input: Parse
      config:
        reasons: [schema]
        max_replays: 3
        ledger: redis://localhost:6379/0?prefix=replays:
        error_handling: {output: errors}
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam

from pipelines.catalog.dlq_replay import NAME, selection
from pipelines.yaml_provider.outputs import ErrorHandling, with_errors
from pipelines.yaml_provider.rows import BlocksToRows, RowShape, RowsToBlocks
from transforms.replay import PARKED, PlanReplays, SelectDeadLetters
from transforms.replay_ledger import ClaimReplays, Ledger
from transforms.replay_report import WOULD_PARK, DescribeReplays
from transforms.schema import Field, Schema

__all__ = ["REPLAY_SCHEMA", "ReplayDeadLetters"]

# The fields of a replay's record (`transforms.replay.PlanReplays`); the message to send again
# travels in ``message_origin``.
REPLAY_SCHEMA = Schema(
    (
        Field("replay_id", "STRING", "REQUIRED"),
        Field("replay_of", "STRING", "REQUIRED"),
        Field("replay_count", "INTEGER", "REQUIRED"),
        Field("pipeline", "STRING", "REQUIRED"),
        Field("step", "STRING", "REQUIRED"),
        Field("reason", "STRING", "REQUIRED"),
        Field("key", "STRING"),
    )
)
_REPLAYS = RowShape(REPLAY_SCHEMA, origin=True, derived=True)
_ANY = RowShape(None, None)  # parked dead letters and report lines: JSON objects as they are


def _names(value: Sequence[str] | str) -> str:
    return value if isinstance(value, str) else ",".join(value)


class ReplayDeadLetters(beam.PTransform):
    """Selects dead letters read back and plans their replays (see the ``dlq_replay`` pipeline).

    Input: rows of dead letters as a dead-letter sink wrote them (Parse with ``schema: none``).
    Outputs: ``replays`` (rows of `REPLAY_SCHEMA`, the message to send in ``message_origin``:
    the original bytes and attributes plus the replay attributes) and ``parked`` (the dead
    letters past ``max_replays`` or with a cut payload); with ``preview``, the main output
    only (``good`` with ``error_handling``): one report row per dead letter saying what would
    be sent or parked (`transforms.replay_report`). Failures (what is not a dead
    letter, a ``where`` that fails) are dead letters of step ``select``.

    Args:
        reasons: the reasons to replay (a list, or comma-separated; empty: all).
        steps: the steps to replay.
        pipelines: the pipelines to replay.
        since: replay dead letters that failed at or after this time (RFC 3339, epoch seconds).
        until: ... and before this time.
        where: an expression over the dead letter's fields, e.g. ``retry_count < 2``.
        max_replays: how many times a message is replayed at most.
        ledger: ``redis://HOST:PORT/DB?prefix=P``: every replay is claimed there before it is
            sent, so that no other run sends it again (file and table sources need one);
            empty or ``none``: no ledger.
        preview: a dry run: report rows instead of replays and parked; nothing is claimed.
        pipeline: the pipeline's name in dead letters.
        error_handling: ``{output: NAME}``: failures as dead-letter rows.
    """

    def __init__(
        self,
        reasons: Sequence[str] | str = "",
        steps: Sequence[str] | str = "",
        pipelines: Sequence[str] | str = "",
        since: str = "",
        until: str = "",
        where: str = "",
        max_replays: int = 3,
        ledger: str = "",
        preview: bool = False,
        pipeline: str = NAME,
        error_handling: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if max_replays < 1:
            raise ValueError("max_replays must be at least 1")
        values = {"reasons": _names(reasons), "steps": _names(steps),
                  "pipelines": _names(pipelines), "since": str(since), "until": str(until),
                  "where": where}  # fmt: skip
        self._select = SelectDeadLetters(pipeline, selection(values))
        self._claim = (
            None
            if ledger in ("", "none")
            else ClaimReplays(Ledger.reached(ledger), uuid.uuid4().hex, dry_run=preview)
        )
        self._plan = PlanReplays(max_replays, WOULD_PARK if preview else PARKED)
        self._describe = DescribeReplays(max_replays) if preview else None
        self._handling = ErrorHandling(error_handling)

    def expand(self, rows: beam.PCollection) -> Any:
        letters, errors = rows | "To blocks" >> RowsToBlocks() | "Select" >> self._select
        if self._claim is not None:
            letters = letters | "Ledger" >> self._claim
        replays, parked = letters | "Plan" >> self._plan
        if self._describe is not None:
            lines = (replays, parked) | "Describe" >> self._describe
            outputs = {"main": lines | "Rows report" >> BlocksToRows(_ANY)}
        else:
            outputs = {
                "replays": replays | "Rows replays" >> BlocksToRows(_REPLAYS),
                "parked": parked | "Rows parked" >> BlocksToRows(_ANY),
            }
        return with_errors(outputs, [errors], self._handling)
