"""The report of a run: its Beam counters, and whether read = written + dead-lettered + dropped."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from transforms.metrics import DEAD_LETTERED, DROPPED, READ, WRITTEN, Balance

__all__ = ["RunReport"]


@dataclass
class RunReport:
    """What a run did, from the pipeline's Beam counters.

    Attributes:
        pipeline: the pipeline's name.
        state: Beam's final state (``DONE``, ``CANCELLED``...).
        counters: every counter of the suite, e.g. ``{"read": 10, "written": 9, ...}``.
        outputs: where the sink and the dead-letter sink wrote (credentials redacted).
        delivered: the counter of input records that reached their end: ``written`` for a
            pipeline that writes its records, ``aggregated`` for one that aggregates them (its
            sinks then write rows, and their failures are not input records), ``enriched`` for
            one that also writes copies (alerts, whose sink and rule failures are not input
            records either).
        stopped_by: the signal that stopped the run (``signal.SIGINT`` for Ctrl-C,
            ``signal.SIGTERM``), or ``None`` when it ended by itself or after ``--max_seconds``.
        splits: the counter of input records that became two records, if any (a CDC key
            change: a delete of the old key and an upsert of the new one); each adds one to
            the records to account for: ``read + splits = delivered + dead_lettered + dropped``.
    """

    pipeline: str
    state: str
    counters: dict[str, int]
    outputs: dict[str, str] = field(default_factory=dict)
    delivered: str = WRITTEN
    splits: str | None = None
    stopped_by: int | None = None

    def count(self, name: str) -> int:
        """Returns counter ``name`` (0 when it never counted)."""
        return self.counters.get(name, 0)

    @property
    def balance(self) -> Balance:
        """How this pipeline's counters add up."""
        return Balance(self.delivered, self.splits)

    @property
    def in_flight(self) -> int:
        """Read (+ splits) - delivered (written or aggregated) - dead-lettered - dropped.

        The records not accounted for yet: 0 when a run has ended balanced.
        """
        return self.balance.unaccounted(self.counters)

    @property
    def balanced(self) -> bool:
        """Whether read (+ splits) = delivered (written or aggregated) + dead-lettered + dropped."""
        return self.in_flight == 0

    def render(self) -> str:
        """Returns the report as a few lines for a person."""
        lines = [f"{self.pipeline}: {self.state}"]
        if self.stopped_by is not None:
            lines[0] += f" (stopped by {signal.Signals(self.stopped_by).name})"
        lines += [f"  {role:<12} {uri}" for role, uri in self.outputs.items()]
        if not self.counters and self.state != "DONE":  # a submitted job: nothing counted here
            return "\n".join(lines)
        totals = [READ, WRITTEN, DEAD_LETTERED, DROPPED]
        if self.delivered != WRITTEN:
            totals.insert(1, self.delivered)
        for total in totals:
            reasons = sorted(
                (name.split(".", 1)[1], value)
                for name, value in self.counters.items()
                if name.startswith(total + ".")
            )
            detail = ", ".join(f"{reason}: {value}" for reason, value in reasons)
            line = f"  {total:<14}{self.count(total):>10}"
            lines.append(line + (f"  ({detail})" if detail else ""))
        others = sorted(name for name in self.counters if name.split(".")[0] not in totals)
        lines += [f"  {name:<14}{self.count(name):>10}" for name in others]
        lines.append("  " + self._balance_line())
        return "\n".join(lines)

    def _balance_line(self) -> str:
        """The balance with its figures, and the dead letters that are not input records.

        E.g. ``read 10 = enriched 7 + dead_lettered (input) 2 + dropped 1: balanced; 1 more dead
        letters of rows or copies (sink_*, rule_error)``.
        """
        terms = self.balance.terms(self.counters)
        verdict = "balanced" if self.balanced else "NOT balanced (records in flight at cancel?)"
        dead = "dead_lettered" if self.delivered == WRITTEN else "dead_lettered (input)"
        read = f"read {self.count(READ)}"
        if self.splits and self.count(self.splits):
            read += f" + {self.splits} {self.count(self.splits)}"
        line = (
            f"{read} = {self.delivered} {terms[self.delivered]} + {dead} "
            f"{terms[DEAD_LETTERED]} + dropped {terms[DROPPED]}: {verdict}"
        )
        besides = self.count(DEAD_LETTERED) - terms[DEAD_LETTERED]
        if besides:
            line += f"; {besides} more dead letters of rows or copies (sink_*, rule_error)"
        return line
