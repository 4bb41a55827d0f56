"""The README's generated tables match the pipelines' declarations and the runner matrix."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipelines.catalog import CATALOG, get_pipeline
from pipelines.devtools.docs import metadata_table, options_table, update_readme
from transforms.io.runners import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_has_the_generated_table_of_every_pipeline() -> None:
    text = README.read_text(encoding="utf-8")
    for name in CATALOG:
        block = f"<!-- options:{name} -->\n{options_table(get_pipeline(name))}<!-- /options -->"
        assert block in text, f"README is stale for {name}: run python -m pipelines.devtools docs"


def test_update_rewrites_a_stale_table_and_then_is_stable(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    shutil.copy(README, copy)
    stale = copy.read_text().replace("| `--spec` | required |", "| `--spec` | stale |")
    copy.write_text(stale)
    assert update_readme(copy) is True
    assert "| `--spec` | required |" in copy.read_text()
    assert update_readme(copy) is False


def test_readme_has_the_generated_runner_matrix() -> None:
    block = f"<!-- runners -->\n{markdown_table()}<!-- /runners -->"
    assert block in README.read_text(encoding="utf-8"), "run python -m pipelines.devtools docs"


def test_readme_has_the_generated_metadata_columns() -> None:
    block = f"<!-- metadata -->\n{metadata_table()}<!-- /metadata -->"
    assert block in README.read_text(encoding="utf-8"), "run python -m pipelines.devtools docs"
