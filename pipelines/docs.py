"""The README's option tables, generated from each pipeline's option declaration.

``python -m pipelines docs`` rewrites the blocks between ``<!-- options:NAME -->`` and
``<!-- /options -->`` in README.md; a test fails when the README and the declarations drift.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.catalog import CATALOG, PipelineSpec, get_pipeline

__all__ = ["options_table", "update_readme"]

_BLOCK = re.compile(r"(<!-- options:(?P<name>\w+) -->\n).*?(<!-- /options -->)", re.DOTALL)


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


def update_readme(path: Path) -> bool:
    """Rewrites the option tables of ``path``; returns whether anything changed."""
    text = path.read_text(encoding="utf-8")

    def table(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in CATALOG:
            raise KeyError(f"README names pipeline {name!r}, which is not in the catalog")
        return match[1] + options_table(get_pipeline(name)) + match[3]

    updated = _BLOCK.sub(table, text)
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return updated != text
