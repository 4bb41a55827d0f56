"""Benchmark input: generated events written once to a JSON Lines file (never a large Create)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from transforms.io.generator import BLOCK, EventGenerator

START = 1_764_064_800.0  # a whole hour
SPAN_SECONDS = 3600.0


def events_file(folder: Path, count: int, keys: int, seed: int = 1) -> Path:
    """Writes ``count`` events (``keys`` distinct users, one hour of event time) once, reuses it.

    Returns:
        The path of the JSON Lines file (about 200 bytes a line).
    """
    path = folder / f"events-{count}-{keys}-{seed}.jsonl"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    generator = EventGenerator(seed=seed, malformed=0.0, late=0.0, users=keys)
    encode = msgspec.json.encode
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        for block in range(-(-count // BLOCK)):
            rng = generator.block_random(block)
            for index in range(block * BLOCK, min(count, (block + 1) * BLOCK)):
                event = generator.event(rng, index, START + index * SPAN_SECONDS / count)
                out.write(encode(event) + b"\n")
    partial.rename(path)
    return path
