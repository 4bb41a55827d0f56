"""Which runner runs which source and sink: the runner x IO matrix, declared once, here.

Each row of `MATRIX` is one kind of source or sink: its URI schemes, the URI parameter that
makes the kind when the runners differ by kind (``live=true``, ``impl=java``), the runners it
works on, and a note per runner (how it runs there, or what to use instead). Everything else
reads this table: a source's or sink's ``runners`` (`transforms.io.base`), the one check of a
source or sink against a runner (`check_runner`, before a graph is built and when a source
that cannot run elsewhere is applied), ``python -m pipelines describe`` (`matrix_lines`) and
the README's table (`markdown_table`, written by ``python -m pipelines.devtools docs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transforms.io.endpoint import EndpointError

__all__ = [
    "ALL_RUNNERS",
    "MATRIX",
    "RUNNERS",
    "Support",
    "check_runner",
    "markdown_table",
    "matrix_lines",
    "runner_name",
    "runners_for",
]

DIRECT, DATAFLOW, FLINK, PORTABLE = (
    "DirectRunner",
    "DataflowRunner",
    "FlinkRunner",
    "PortableRunner",
)
RUNNERS = (DIRECT, DATAFLOW, FLINK, PORTABLE)
ALL_RUNNERS = frozenset(RUNNERS)
# The DirectRunner's engines, which a pipeline may name or be given: all are the DirectRunner.
_DIRECT_ENGINES = frozenset({DIRECT, "SwitchingDirectRunner", "BundleBasedDirectRunner",
                             "FnApiRunner"})  # fmt: skip
_USE_JAVA = "use impl=java"
_PUBSUB_ELSEWHERE = (
    "Beam's Python Pub/Sub read runs only on Dataflow and the DirectRunner; use kafka:// or "
    "kinesis://"
)


@dataclass(frozen=True)
class Support:
    """The runners of one kind of source or sink.

    Attributes:
        role: ``source`` or ``sink``.
        schemes: the URI schemes of the kind, e.g. ``("kafka", "kinesis")``.
        runners: the runners it works on; it is refused on the others.
        kind: the URI parameter that makes the kind (``live=true``, ``impl=java``), or ``""``
            for the schemes' default kind.
        notes: per runner, how it runs there or, where it does not, what to use instead.
    """

    role: str
    schemes: tuple[str, ...]
    runners: frozenset[str]
    kind: str = ""
    notes: Mapping[str, str] = field(default_factory=dict)

    def label(self, quote: str = "") -> str:
        """How the tables name the row: ``kafka://, kinesis:// sources, live=true``.

        Args:
            quote: put around each scheme and the kind (a backtick for Markdown).
        """
        schemes = ", ".join(f"{quote}{scheme}://{quote}" for scheme in self.schemes)
        plural = "s" if len(self.schemes) > 1 else ""
        kind = f", {quote}{self.kind}{quote}" if self.kind else ""
        return f"{schemes} {self.role}{plural}{kind}"


MATRIX: tuple[Support, ...] = (
    Support("source", ("generator", "file"), ALL_RUNNERS,
            notes={DIRECT: "the live generator on the streaming engine"}),
    Support("source", ("pubsub",), frozenset({DIRECT, DATAFLOW}),
            notes={DIRECT: "streaming", FLINK: _PUBSUB_ELSEWHERE, PORTABLE: _PUBSUB_ELSEWHERE}),
    Support("source", ("kafka", "kinesis"), ALL_RUNNERS),  # bounded reads
    Support("source", ("bigquery",), ALL_RUNNERS),  # a table's rows, once
    Support("source", ("kafka", "kinesis"), frozenset({DIRECT}), "live=true",
            notes={DIRECT: "streaming engine", DATAFLOW: _USE_JAVA, FLINK: _USE_JAVA,
                   PORTABLE: _USE_JAVA}),
    Support("source", ("kafka",), frozenset({DATAFLOW, FLINK, PORTABLE}), "impl=java",
            notes={DIRECT: "use impl=python", DATAFLOW: "Java image variant"}),
    Support("source", ("kinesis",), frozenset({DATAFLOW, FLINK}), "impl=java",
            notes={DIRECT: "use impl=python", DATAFLOW: "Java image variant",
                   PORTABLE: "use impl=python"}),
    Support("sink", ("file", "stdout", "pubsub", "kinesis", "bigquery", "bigquery-replica",
                     "redis", "rediss", "kafka"), ALL_RUNNERS),
    Support("sink", ("bigquery",), ALL_RUNNERS, "mode=exactly_once",
            notes=dict.fromkeys(RUNNERS, "Storage Write committed streams and a write log")),
    Support("sink", ("bigquery",), ALL_RUNNERS, "method=insert_all",
            notes=dict.fromkeys(RUNNERS, "legacy streaming inserts, at least once")),
    Support("sink", ("console",), frozenset({DIRECT}),
            notes=dict.fromkeys((DATAFLOW, FLINK, PORTABLE), "use file:// or stdout://")),
)  # fmt: skip


def runner_name(runner: Any) -> str:
    """Returns the matrix's name of a runner, given by name or as an instance.

    Any engine of the DirectRunner (``BundleBasedDirectRunner``, ``FnApiRunner``...) is
    ``DirectRunner``.
    """
    name = runner if isinstance(runner, str) else type(runner).__name__
    return DIRECT if name in _DIRECT_ENGINES else name


def _row(role: str, scheme: str, kind: str) -> Support:
    for row in MATRIX:
        if row.role == role and scheme in row.schemes and row.kind == kind:
            return row
    raise LookupError(
        f"no {role} {scheme}:// {kind} in the runner matrix: add a row to "
        "transforms/io/runners.py MATRIX"
    )


def runners_for(role: str, scheme: str, kind: str = "") -> frozenset[str]:
    """Returns the runners of a source or sink (``role``) of ``scheme`` and ``kind``."""
    return _row(role, scheme, kind).runners


def check_runner(io: Any, runner: Any) -> None:
    """Refuses a source or sink on a runner it does not run on, naming what works there.

    Args:
        io: a `transforms.io.base.Source` or `Sink` (its ``role``, ``endpoint`` and
            ``runner_kind``).
        runner: the runner, by name or instance.

    Raises:
        EndpointError: e.g. ``pubsub://...: this source does not run on FlinkRunner; it runs
            on DataflowRunner, DirectRunner: Beam's Python Pub/Sub read runs only on ...
            On FlinkRunner, use a source among: file://, generator://, kafka://, kinesis://``.
    """
    name = runner_name(runner)
    row = _row(io.role, io.endpoint.scheme, io.runner_kind)
    if name in row.runners:
        return
    note = row.notes.get(name)
    others = sorted(
        {f"{scheme}://" for other in MATRIX if other.role == io.role and not other.kind
         and name in other.runners for scheme in other.schemes}
    )  # fmt: skip
    raise EndpointError(
        f"{io.endpoint}: this {io.role} does not run on {name}; it runs on "
        f"{', '.join(sorted(row.runners))}{f': {note}' if note else ''}. "
        f"On {name}, use a {io.role} among: {', '.join(others)}"
    )


def check_runners(ios: Iterable[Any], runner: Any) -> None:
    """`check_runner` of each source and sink of ``ios``."""
    for io in ios:
        check_runner(io, runner)


def matrix_lines() -> list[str]:
    """The matrix as text for ``describe``: a line per scheme and kind, ``yes`` or ``-``."""
    rows = [
        (" ".join(filter(None, (row.role, scheme, row.kind))), row.runners)
        for row in MATRIX
        for scheme in row.schemes
    ]
    width = max(len(runner) for runner in RUNNERS)
    label = max(len(name) for name, _ in rows) + 2
    lines = ["runners (source and sink schemes x runner; see --source and --sink):"]
    lines.append("  " + " " * label + "  ".join(f"{runner:<{width}}" for runner in RUNNERS))
    for name, runners in rows:
        marks = "  ".join(f"{'yes' if r in runners else '-':<{width}}" for r in RUNNERS)
        lines.append(f"  {name:<{label}}{marks}".rstrip())
    return lines


def markdown_table() -> str:
    """The matrix as the README's Markdown table, with the notes."""
    lines = ["| source / sink | " + " | ".join(RUNNERS) + " |", "|---" * (len(RUNNERS) + 1) + "|"]
    for row in MATRIX:
        cells = []
        for runner in RUNNERS:
            note = row.notes.get(runner)
            if runner in row.runners:
                cells.append(f"yes ({note})" if note else "yes")
            else:
                cells.append(f"no: {note}" if note else "no")
        lines.append(f"| {row.label('`')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
