"""Writes the JSON files the Terraform reads, from the suite's own declarations.

* ``terraform/schemas/dead_letter.json``: the dead-letter table, from
  ``transforms.dead_letter.DEAD_LETTER_SCHEMA``.
* ``terraform/schemas/cdc_staging.json`` and ``cdc_replica.json``: the CDC staging
  (changelog) and replica tables of the ``bigquery-replica://`` sink, from
  ``transforms.io.bigquery.replica_tables.STAGING_SCHEMA`` and ``REPLICA_SCHEMA``.
* ``terraform/schemas/source_metadata.json``: the source metadata columns a ``bigquery://``
  sink with ``metadata=true`` adds after a table's own columns, from
  ``transforms.io.metadata.METADATA_SCHEMA`` (for tables created outside the sink).
* ``terraform/modules/wiring/pipeline_options.json``: every pipeline of ``pipelines.catalog``
  with its template's parameters (the ``pipeline`` selector, then every option: name,
  required, default), from which the wiring module builds the Flex Template job's
  ``parameters``.
* ``terraform/modules/monitoring/pipelines.json``: every pipeline's declared metrics
  (``transforms.metrics``), its Cloud Monitoring dashboard and its alert queries, from
  ``pipelines.framework.monitoring.monitoring_document``: a counter added to the declaration
  shows on the dashboards at the next generate, without touching HCL; and
  ``dashboard.svg``, a picture of ``events_to_bigquery``'s dashboard layout for the README.

The events table reads ``pipelines/schemas/events.json`` directly. Usage, from the repository
root::

    .venv/bin/python terraform/generate.py          # rewrite the files
    .venv/bin/python terraform/generate.py --check  # exit 1 if a file is out of date
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def dead_letter_schema() -> list[dict[str, Any]]:
    """The dead-letter table's BigQuery schema: ``DEAD_LETTER_SCHEMA.to_bigquery()``."""
    from transforms.dead_letter import DEAD_LETTER_SCHEMA

    return DEAD_LETTER_SCHEMA.to_bigquery()


def cdc_staging_schema() -> list[dict[str, Any]]:
    """The CDC staging (changelog) tables' schema: ``replica_tables.STAGING_SCHEMA``."""
    from transforms.io.bigquery.replica_tables import STAGING_SCHEMA

    return STAGING_SCHEMA.to_bigquery()


def cdc_replica_schema() -> list[dict[str, Any]]:
    """The CDC replica tables' schema: ``replica_tables.REPLICA_SCHEMA``."""
    from transforms.io.bigquery.replica_tables import REPLICA_SCHEMA

    return REPLICA_SCHEMA.to_bigquery()


def source_metadata_schema() -> list[dict[str, Any]]:
    """The source metadata columns: ``METADATA_SCHEMA.to_bigquery()``."""
    from transforms.io.metadata import METADATA_SCHEMA

    return METADATA_SCHEMA.to_bigquery()


def pipeline_options() -> dict[str, Any]:
    """Every catalog pipeline and its template's parameters, in the template's order.

    The first parameter is the template selector (``pipelines.framework.templates.SELECTOR``: the
    one image runs the pipeline it names; its value is the pipeline's name), then every option.
    A default is the text the option takes on a command line (``Option.render``).
    """
    from pipelines.catalog import CATALOG, get_pipeline
    from pipelines.framework.templates import SELECTOR

    out: dict[str, Any] = {}
    for name in sorted(CATALOG):
        spec = get_pipeline(name)
        selector = {"name": SELECTOR, "required": True, "default": name}
        options = [
            {
                "name": option.name,
                "required": option.required,
                "default": None if option.default is None else option.render(option.default),
            }
            for option in spec.options
        ]
        out[name] = {"parameters": [selector, *options]}
    return out


def monitoring() -> dict[str, Any]:
    """Every catalog pipeline's metrics, dashboard and alert queries (``monitoring_document``)."""
    from pipelines.catalog import CATALOG, get_pipeline
    from pipelines.framework.monitoring import monitoring_document

    return {name: monitoring_document(get_pipeline(name)) for name in sorted(CATALOG)}


def dashboard_picture() -> str:
    """An SVG picture of ``events_to_bigquery``'s dashboard layout, for the README."""
    from pipelines.catalog import get_pipeline
    from pipelines.devtools.dashboard_picture import render_svg
    from pipelines.framework.monitoring import JOB, dashboard

    picture = dashboard(get_pipeline("events_to_bigquery"))
    picture["displayName"] = picture["displayName"].replace(JOB, "its job")
    return render_svg(picture)


FILES: dict[str, Callable[[], Any]] = {
    "schemas/dead_letter.json": dead_letter_schema,
    "schemas/cdc_staging.json": cdc_staging_schema,
    "schemas/cdc_replica.json": cdc_replica_schema,
    "schemas/source_metadata.json": source_metadata_schema,
    "modules/wiring/pipeline_options.json": pipeline_options,
    "modules/monitoring/pipelines.json": monitoring,
    "modules/monitoring/dashboard.svg": dashboard_picture,
}


def render(value: Any) -> str:
    """The file text of a generated value: indented JSON with a final newline; text as it is."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def stale_files() -> list[str]:
    """The generated files (relative to ``terraform/``) whose content is out of date."""
    return [
        relative
        for relative, produce in FILES.items()
        if not (HERE / relative).is_file()
        or (HERE / relative).read_text(encoding="utf-8") != render(produce())
    ]


def main(argv: Sequence[str]) -> int:
    """Writes every generated file, or with ``--check`` reports the stale ones (exit 1)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if "--check" in argv:
        stale = stale_files()
        for relative in stale:
            print(f"out of date: terraform/{relative} (run: python terraform/generate.py)")
        return 1 if stale else 0
    for relative, produce in FILES.items():
        path = HERE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(produce()), encoding="utf-8")
        print(f"wrote terraform/{relative}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
