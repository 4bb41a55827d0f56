"""Beam YAML's error handling for the provider's transforms, and the base of its steps.

A transform configured with ``error_handling: {output: NAME}`` returns its main output as
``good`` (Beam YAML's main tag; ``main_tag`` renames it) and its failures as ``NAME``: dead-letter
rows (`rows.DEAD_LETTER_TYPE`: original bytes, reason, step, origin...). Beam YAML refuses a
pipeline that leaves ``NAME`` unconsumed. Without ``error_handling`` a failure fails the
pipeline, as in Beam YAML's own transforms: the error names the step and the reason, and how to
receive failures as rows instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam

from pipelines.yaml_provider.rows import (
    DEAD_LETTER_TYPE,
    BlocksToRows,
    RowShape,
    RowsToBlocks,
    dead_letter_row,
)

__all__ = ["DEFAULT_PIPELINE", "ErrorHandling", "RecordFailed", "RowStep", "with_errors"]

DEFAULT_PIPELINE = "beam_yaml"


class RecordFailed(RuntimeError):
    """A record failed a step that has no ``error_handling`` output."""


class ErrorHandling:
    """A transform's ``error_handling`` config, validated.

    Args:
        config: ``{"output": NAME}`` (optionally ``main_tag``), or ``None`` (failures fail).

    Raises:
        ValueError: no ``output``, or unknown keys.
    """

    def __init__(self, config: Mapping[str, Any] | None) -> None:
        config = dict(config or {})
        unknown = sorted(set(config) - {"output", "main_tag"})
        if unknown:
            raise ValueError(f"error_handling: unknown keys {unknown}; use output (and main_tag)")
        if config and not config.get("output"):
            raise ValueError("error_handling needs output: NAME, the name of the error output")
        self.output: str | None = config.get("output")
        self.main_tag: str = config.get("main_tag", "good")


class _FailFn(beam.DoFn):
    def process(self, letter: dict[str, Any]) -> Iterator[None]:
        raise RecordFailed(
            f"step {letter['step']} failed on a record ({letter['reason']}): "
            f"{letter['error_message']}; add error_handling: {{output: NAME}} to the transform "
            "to receive failures as rows"
        )


def with_errors(
    mains: Mapping[str, beam.PCollection],
    errors: Sequence[beam.PCollection],
    handling: ErrorHandling,
) -> Any:
    """Returns a transform's outputs, Beam YAML style.

    Args:
        mains: the main outputs by tag; a single one is returned bare without error handling,
            or under ``handling.main_tag`` with it (its tag here is ignored).
        errors: PCollections of dead-letter dicts.
        handling: the transform's error handling.
    """
    first = next(iter(mains.values()))
    letters = (
        tuple(errors) | "Errors" >> beam.Flatten()
        if errors
        else first.pipeline | "No errors" >> beam.Create([])
    )
    single = len(mains) == 1
    if handling.output is None:
        _ = letters | "Fail on errors" >> beam.ParDo(_FailFn())
        return first if single else dict(mains)
    rows = letters | "Error rows" >> beam.Map(dead_letter_row).with_output_types(DEAD_LETTER_TYPE)
    named = {handling.main_tag: first} if single else dict(mains)
    return {**named, handling.output: rows}


class RowStep(beam.PTransform):
    """A suite step on record rows: rows -> blocks -> the step -> rows, failures as YAML says.

    A subclass sets ``pipeline_name`` (``pipeline`` is Beam's own attribute) and ``handling``,
    and implements `apply_step` and `shape`.
    """

    pipeline_name: str
    handling: ErrorHandling

    def shape(self, incoming: RowShape) -> RowShape:
        """The shape of the output rows, given the input's."""
        raise NotImplementedError

    def apply_step(self, blocks: beam.PCollection, incoming: RowShape) -> tuple[Any, list[Any]]:
        """Applies the suite's step to Blocks of Records; returns ``(main, error outputs)``.

        ``main`` is a PCollection of Blocks, or a dict of them by output name.
        """
        raise NotImplementedError

    def expand(self, rows: beam.PCollection) -> Any:
        incoming = RowShape.of(rows.element_type)
        blocks = rows | "To blocks" >> RowsToBlocks()
        main, errors = self.apply_step(blocks, incoming)
        out = self.shape(incoming)
        mains = main if isinstance(main, dict) else {"main": main}
        converted = {
            name: pcoll | f"Rows {name}" >> BlocksToRows(out) for name, pcoll in mains.items()
        }
        return with_errors(converted, errors, self.handling)
