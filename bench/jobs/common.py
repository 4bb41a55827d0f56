"""What every benchmark job shares: the variant signature, the plain-loop decoders, the job.

Every variant reads the same generated file and writes its output (rows, dead letters, final
tables or Redis hashes), so each does the whole job. Variants are ``fn(path, out) -> int``;
``out`` is a fresh path in a fresh temporary folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Variant = Callable[[Path, Path], int]
Decode = Callable[[bytes], Any]

ROOT = Path(__file__).resolve().parent.parent.parent


def decoder(name: str) -> Decode:
    """Returns the JSON decoder a plain loop uses: ``json``, ``orjson`` or ``msgspec``."""
    if name == "json":
        return json.loads
    if name == "orjson":
        import orjson

        return orjson.loads
    import msgspec

    return msgspec.json.Decoder().decode


def loops(body: Callable[[Decode, Path, Path], int]) -> dict[str, Variant]:
    """The plain loop with each JSON decoder: json (the baseline), orjson, msgspec."""
    return {
        f"loop_{name}": (lambda path, out, name=name: body(decoder(name), path, out))
        for name in ("json", "orjson", "msgspec")
    }


def run_suite(name: str, args: list[str]) -> Any:
    """Runs the suite's pipeline ``name`` with ``args``; checks that it balances."""
    from pipelines.catalog import get_pipeline
    from pipelines.framework.run import run_pipeline

    report = run_pipeline(get_pipeline(name), args)
    assert report.balanced, report.render()
    return report


def file_args(path: Path, out: Path) -> list[str]:
    """The options of a suite run from the file ``path`` to files next to ``out``."""
    return [f"--source=file://{path}", *sink_args(out)]


def sink_args(out: Path) -> list[str]:
    """The sink and dead-letter options of a suite run writing files next to ``out``."""
    return [f"--sink=file://{out}", f"--dead_letter=file://{out}-dead-letter"]


# The events of `bench.data` are the generator's: the suite checks them as the baselines do.
EVENTS_SCHEMA = "--schema=builtin:events"


@dataclass(frozen=True)
class Job:
    """A benchmark job.

    Attributes:
        data: makes (once) the input file: ``data(folder, count, keys) -> path``.
        variants: the variants, by name; the first is the baseline (``loop_json`` in most
            jobs: the plain loop with the standard library's ``json``).
        keys: a fixed key count (the ``--keys`` option is then ignored).
        unavailable: returns why the job cannot run here, or None.
        cleanup: run after a variant (outside its timing), returns a count to show.
    """

    data: Callable[[Path, int, int], Path]
    variants: dict[str, Variant]
    keys: int | None = None
    unavailable: Callable[[], str | None] | None = None
    cleanup: Callable[[Path], int] | None = field(default=None)
