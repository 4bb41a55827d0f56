"""``enrich``: events joined with a reference table of users by ``user_id`` (a side input).

The table (`users_file`, JSON Lines written once next to the events: ``user_id``, ``plan``,
``country``, ``signup_date``; one user in a hundred has no row) is nested under each event's
``user`` field, ``null`` for a user without a row.

Suite: the spine (`pipelines.framework.spine.Spine` with the events schema, dead letters) +
`transforms.enrich.side_input.SideInputEnrich` from ``file:///...?key={user_id}`` + the file
sink.
``enrich_and_alert`` is not used: it also routes every record through alert rules to an
alert sink, which is not this job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam

from bench.data import events_file
from bench.jobs.common import EVENTS_SCHEMA, Decode, Job, file_args, loops
from pipelines.catalog import PipelineSpec
from pipelines.framework.options import COMMON_OPTIONS, Option, OptionError
from pipelines.framework.spine import PARSE_OPTIONS, ParseSettings, Spine, SpineConfig, SpineView
from transforms.enrich.base import EnrichSettings, enrich_from_uri
from transforms.io.base import SinkContext
from transforms.metrics import WRITTEN

NAME = "bench_enrich"
INTO = "user"
PLANS = ("free", "pro", "team", "enterprise")
COUNTRIES = ("DE", "FR", "US", "JP", "BR", "IN")
NO_ROW_EVERY = 100  # users u0, u100, u200... have no row


def users_file(events: Path, keys: int) -> Path:
    """Writes (once) the users table of ``keys`` users next to ``events``; returns its path."""
    path = table_of(events)
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    with partial.open("w") as out:
        for n in range(keys):
            if n % NO_ROW_EVERY:
                row = {"user_id": f"u{n}", "plan": PLANS[n % len(PLANS)],
                       "country": COUNTRIES[n % len(COUNTRIES)],
                       "signup_date": f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}"}  # fmt: skip
                out.write(json.dumps(row) + "\n")
    partial.rename(path)
    return path


def table_of(events: Path) -> Path:
    """The users table that goes with the events file ``events``."""
    return events.with_suffix(".users.jsonl")


def _data(folder: Path, count: int, keys: int) -> Path:
    events = events_file(folder, count, keys)
    users_file(events, keys)
    return events


def _enrich_loop(decode: Decode, path: Path, out: Path) -> int:
    """Loads the table into a dict, then decodes, joins and writes each event."""
    with table_of(path).open("rb") as lines:
        table = {row["user_id"]: row for row in map(decode, lines)}
    written = 0
    with path.open("rb") as lines, out.open("w") as rows:
        for line in lines:
            event = decode(line)
            event[INTO] = table.get(event["user_id"])
            rows.write(json.dumps(event) + "\n")
            written += 1
    return written


def _keyed(line: str) -> tuple[str, dict[str, Any]]:
    row = json.loads(line)
    return row["user_id"], row


def _join(event: dict[str, Any], table: dict[str, dict[str, Any]]) -> str:
    return json.dumps({**event, INTO: table.get(event["user_id"])})


def _enrich_naive(path: Path, out: Path) -> int:
    """ReadFromText -> Map(json.loads) -> Map(join, AsDict(the table)) -> WriteToText."""
    with beam.Pipeline() as pipeline:
        table = (
            pipeline
            | "Read users" >> beam.io.ReadFromText(str(table_of(path)))
            | "Key users" >> beam.Map(_keyed)
        )
        _ = (
            pipeline
            | "Read events" >> beam.io.ReadFromText(str(path))
            | "Decode" >> beam.Map(json.loads)
            | "Join" >> beam.Map(_join, beam.pvalue.AsDict(table))
            | "Write" >> beam.io.WriteToText(str(out))
        )
    return -1


@dataclass(frozen=True)
class EnrichConfig(SpineView):
    """The validated options of the bench's enrich pipeline: the spine and the enrich step."""

    spine: SpineConfig
    enrich: beam.PTransform


def _configure(values: dict[str, Any]) -> EnrichConfig:
    parse = ParseSettings.from_options(values)
    settings = EnrichSettings(NAME, into=INTO)
    try:
        enrich = enrich_from_uri(values["reference"], settings)
    except ValueError as error:
        raise OptionError(f"--reference: {error}") from None
    # The sink writes enriched records, which the events schema does not describe.
    output = SinkContext(NAME, None, parse.time_field)
    return EnrichConfig(SpineConfig.from_options(NAME, values, parse, output), enrich)


def _build(pipeline: beam.Pipeline, config: EnrichConfig) -> None:
    with Spine(pipeline, config.spine) as spine:
        blocks = spine.read()
        spine.write("Write", config.sink, spine.apply("Enrich", config.enrich, blocks))


SUITE = PipelineSpec(
    name=NAME,
    description="Events enriched with a reference table (benchmark only, not in the catalog).",
    options=COMMON_OPTIONS + PARSE_OPTIONS
    + (Option("reference", "The reference table URI (transforms.enrich.base).", required=True),),
    configure=_configure,
    build=_build,
)  # fmt: skip


def _enrich_suite(path: Path, out: Path) -> int:
    from pipelines.framework.run import run_pipeline

    reference = f"file://{table_of(path)}?key={{user_id}}"
    report = run_pipeline(SUITE, [*file_args(path, out), f"--reference={reference}", EVENTS_SCHEMA])
    assert report.balanced, report.render()
    return report.count(WRITTEN)


JOB = Job(_data, {**loops(_enrich_loop), "naive_beam": _enrich_naive, "suite": _enrich_suite})
