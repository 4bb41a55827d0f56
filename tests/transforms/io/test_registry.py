"""Tests of transforms.io.registry: scheme lookup and the registered modules."""

from __future__ import annotations

import pytest

from transforms.io.base import Sink, SinkContext, Source
from transforms.io.endpoint import EndpointError
from transforms.io.registry import LOOKUPS, REFERENCES, SINKS, SOURCES, load, make_sink, make_source


def test_unknown_source_scheme_lists_known_schemes() -> None:
    with pytest.raises(EndpointError) as info:
        make_source("nosuch://host/x")
    text = str(info.value)
    assert "no source for scheme 'nosuch'" in text
    for scheme in SOURCES:
        assert f"{scheme}://" in text


def test_unknown_sink_scheme_lists_known_schemes() -> None:
    with pytest.raises(EndpointError) as info:
        make_sink("nosuch://u:hunter2@host/x", SinkContext("pipe"))
    text = str(info.value)
    assert "no sink for scheme 'nosuch'" in text
    assert "hunter2" not in text
    for scheme in SINKS:
        assert f"{scheme}://" in text


def test_bad_uri_is_endpoint_error() -> None:
    with pytest.raises(EndpointError):
        make_source("not a uri")


def _cases(table: dict[str, str], role: str) -> list:
    base = Source if role == "source" else Sink
    return [
        pytest.param(target, base, id=f"{role}-{scheme}")
        for scheme, target in sorted(table.items())
    ]


@pytest.mark.parametrize(("target", "base"), _cases(SOURCES, "source") + _cases(SINKS, "sink"))
def test_registered_module_imports(target: str, base: type) -> None:
    assert issubclass(load(target), base)


@pytest.mark.parametrize("target", sorted({*REFERENCES.values(), *LOOKUPS.values()}))
def test_registered_enrich_references_build_from_an_endpoint(target: str) -> None:
    assert callable(load(target).from_endpoint)


def test_make_source_and_sink_build_the_registered_classes(tmp_path) -> None:
    (tmp_path / "x.jsonl").write_bytes(b"{}\n")
    source = make_source(f"file://{tmp_path}/x.jsonl")
    assert type(source).__name__ == "FileSource"
    assert source.default_label() == "Read file"
    assert type(make_source("generator://events?count=1")).__name__ == "GeneratorSource"
    sink = make_sink(f"file://{tmp_path}/out", SinkContext("pipe"))
    assert type(sink).__name__ == "FileSink" and sink.default_label() == "Write file"
    assert type(make_sink("stdout://", SinkContext("pipe"))).__name__ == "StdoutSink"
