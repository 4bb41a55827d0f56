"""What ``describe`` shows: options, runners, delivery, BigQuery writes, outages, metrics."""

from __future__ import annotations

import textwrap
from typing import Any

from pipelines.catalog import PipelineSpec
from pipelines.framework.monitoring import metrics_document, metrics_lines
from transforms.io.bigquery.sink import WRITE_MODES
from transforms.io.endpoint import redact_option
from transforms.io.registry import SOURCES, load
from transforms.io.retry import OUTAGE_BEHAVIOUR
from transforms.io.runners import MATRIX, matrix_lines, runners_for

__all__ = ["describe_document", "describe_options"]


def _delivery() -> dict[str, dict[str, str]]:
    """Returns what each source scheme guarantees per runner when a run is killed."""
    return {
        scheme: dict(sorted(load(target).delivery.items()))
        for scheme, target in sorted(SOURCES.items())
    }


def _delivery_lines() -> list[str]:
    lines = ["delivery (what a source guarantees when a run is killed):"]
    for scheme, by_runner in _delivery().items():
        lines += [f"  {scheme} on {runner}: {guarantee}" for runner, guarantee in by_runner.items()]
    return lines + [""]


def _sink_options(spec: PipelineSpec) -> list[str]:
    """The options of ``spec`` declared to take sink URIs (`Option.sink`)."""
    return [option.name for option in spec.options if option.sink]


def _bigquery_writes(spec: PipelineSpec) -> dict[str, Any]:
    """Returns the BigQuery write modes the pipeline's sink options take, and their runners."""
    return {
        "options": _sink_options(spec),
        "modes": [
            {"parameters": parameters, "meaning": meaning,
             "runners": sorted(runners_for("sink", "bigquery", kind))}
            for parameters, kind, meaning in WRITE_MODES
        ],
    }  # fmt: skip


def _bigquery_lines(spec: PipelineSpec) -> list[str]:
    writes = _bigquery_writes(spec)
    if not writes["options"]:
        return []
    options = ", ".join(f"--{name}" for name in writes["options"])
    lines = [f"BigQuery writes (a bigquery:// URI in {options}):"]
    for mode in writes["modes"]:
        lines.append(f"  {mode['parameters']}: {', '.join(mode['runners'])}")
        lines += textwrap.wrap(mode["meaning"], 96, initial_indent="      ",
                               subsequent_indent="      ")  # fmt: skip
    return lines + [""]


def describe_document(spec: PipelineSpec) -> dict[str, Any]:
    """Returns what `describe_options` shows, as JSON data (``describe --format=json``).

    Returns:
        ``{"name": ..., "description": ..., "runners": [{"role": "source", "schemes":
        ["generator", "file"], "kind": "", "runners": [...], "notes": {...}}, ...],
        "delivery": {"file": {"DirectRunner": "..."}}, "bigquery_writes": {"options":
        ["sink", "dead_letter"], "modes": [{"parameters": "mode=exactly_once", "meaning": ...,
        "runners": ["DataflowRunner", ...]}, ...]},
        "sink_outages": "...", "metrics": [{"name": "read", "kind": "counter", "labels":
        ["step"], "unit": "1", "meaning": ...}, ...], "balance": {"read": ["read"], ...},
        "options": [{"name": "source", "help": ..., "required": true,
        "default": null, "choices": [], "group": "Endpoints"}, ...]}``; secret defaults masked.
    """
    return {
        "name": spec.name,
        "description": spec.description,
        "runners": [
            {
                "role": row.role,
                "schemes": list(row.schemes),
                "kind": row.kind,
                "runners": sorted(row.runners),
                "notes": dict(row.notes),
            }
            for row in MATRIX
        ],
        "delivery": _delivery(),
        "bigquery_writes": _bigquery_writes(spec),
        "sink_outages": OUTAGE_BEHAVIOUR,
        **metrics_document(spec),
        "options": [
            {
                "name": option.name,
                "help": option.help,
                "required": option.required,
                "default": None
                if option.required
                else redact_option(option.name, str(option.default)),
                "choices": list(option.choices),
                "group": option.group,
            }
            for option in spec.options
        ],
    }


def describe_options(spec: PipelineSpec) -> str:
    """Returns the options of ``spec`` with help and defaults, runners, delivery, writes."""
    lines = [spec.name, "", spec.description, "", *matrix_lines(), "", *_delivery_lines()]
    lines += _bigquery_lines(spec)
    lines += ["Sink outages", *textwrap.wrap(OUTAGE_BEHAVIOUR, 96, initial_indent="  ",
                                             subsequent_indent="  "), ""]  # fmt: skip
    lines += metrics_lines(spec)
    for option in spec.options:
        flag = f"--{option.name}" + (" (required)" if option.required else "")
        lines.append(flag)
        lines.append(f"    {option.help}")
        if option.choices:
            lines.append(f"    one of: {', '.join(option.choices)}")
        if not option.required:
            lines.append(f"    default: {redact_option(option.name, str(option.default))}")
    return "\n".join(lines)
