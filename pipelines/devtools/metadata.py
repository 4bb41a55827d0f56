"""The checkout's copies of the templates' metadata: ``templates/NAME/metadata.json``.

The package generates a template's metadata from the pipeline's declaration
(`pipelines.framework.templates.template_metadata`); the checkout keeps a copy of each for
readers and reviewers. ``python -m pipelines.devtools metadata`` checks the copies and
``--write`` rewrites them.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.catalog import CATALOG, get_pipeline
from pipelines.framework.templates import (
    TemplateError,
    metadata_text,
    template_metadata,
    validate_metadata,
)

__all__ = ["ROOT", "check_metadata", "metadata_path", "write_metadata"]

ROOT = Path(__file__).resolve().parents[2]


def metadata_path(name: str, root: Path = ROOT) -> Path:
    """Returns where the metadata of pipeline ``name`` is committed."""
    return root / "templates" / name / "metadata.json"


def write_metadata(root: Path = ROOT) -> list[str]:
    """Regenerates every catalog pipeline's ``metadata.json``; returns the names that changed."""
    changed = []
    for name in sorted(CATALOG):
        path = metadata_path(name, root)
        text = metadata_text(get_pipeline(name))
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed


def check_metadata(root: Path = ROOT) -> list[str]:
    """Checks every committed ``metadata.json``: valid, and what the declaration generates.

    Returns:
        The pipelines checked.

    Raises:
        TemplateError: a file is missing, invalid or stale (naming the command that fixes it).
    """
    names = sorted(CATALOG)
    for name in names:
        path = metadata_path(name, root)
        fix = "run python -m pipelines.devtools metadata --write"
        if not path.exists():
            raise TemplateError(f"{path} is missing: {fix}")
        document = json.loads(path.read_text(encoding="utf-8"))
        validate_metadata(document)
        if document != template_metadata(get_pipeline(name)):
            raise TemplateError(f"{path} is stale: {fix}")
    return names
