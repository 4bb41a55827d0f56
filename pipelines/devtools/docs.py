"""The README's generated tables: pipeline options, the runner x IO matrix, metadata columns.

``python -m pipelines.devtools docs`` rewrites the blocks between ``<!-- options:NAME -->`` and
``<!-- /options -->``, between ``<!-- runners -->`` and ``<!-- /runners -->`` (the matrix from
`transforms.io.runners.markdown_table`), and between ``<!-- metadata -->`` and
``<!-- /metadata -->`` (the source metadata columns, `transforms.io.metadata.METADATA_SCHEMA`),
in README.md; a test fails when the README and the declarations drift.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.catalog import CATALOG, PipelineSpec, get_pipeline
from transforms.io.metadata import METADATA_SCHEMA
from transforms.io.runners import markdown_table

__all__ = ["metadata_table", "options_table", "update_readme"]

_BLOCK = re.compile(r"(<!-- options:(?P<name>\w+) -->\n).*?(<!-- /options -->)", re.DOTALL)
_RUNNERS = re.compile(r"(<!-- runners -->\n).*?(<!-- /runners -->)", re.DOTALL)
_METADATA = re.compile(r"(<!-- metadata -->\n).*?(<!-- /metadata -->)", re.DOTALL)


def options_table(spec: PipelineSpec) -> str:
    """Returns the Markdown table of a pipeline's options."""
    lines = ["| option | default | help |", "|---|---|---|"]
    for option in spec.options:
        default = "required" if option.required else f"`{option.default}`"
        if option.default in ("", None) and not option.required:
            default = "(none)"
        text = option.help.replace("|", "\\|")
        if option.choices:
            text += f" One of: {', '.join(f'`{c}`' for c in option.choices)}."
        lines.append(f"| `--{option.name}` | {default} | {text} |")
    return "\n".join(lines) + "\n"


def metadata_table() -> str:
    """Returns the Markdown table of the source metadata columns (``metadata=true``)."""
    lines = ["| column | BigQuery type | filled by |", "|---|---|---|"]
    lines += [
        f"| `{field.name}` | {field.type} | {field.description} |"
        for field in METADATA_SCHEMA.fields
    ]
    return "\n".join(lines) + "\n"


def update_readme(path: Path) -> bool:
    """Rewrites the generated tables of ``path``; returns whether it changed."""
    text = path.read_text(encoding="utf-8")

    def table(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in CATALOG:
            raise KeyError(f"README names pipeline {name!r}, which is not in the catalog")
        return match[1] + options_table(get_pipeline(name)) + match[3]

    updated = _BLOCK.sub(table, text)
    updated = _RUNNERS.sub(lambda match: match[1] + markdown_table() + match[2], updated)
    updated = _METADATA.sub(lambda match: match[1] + metadata_table() + match[2], updated)
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return updated != text
