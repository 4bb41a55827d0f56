"""JSON Schema files validate records with every keyword, through a real run of the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pipelines.framework.cli import main
from transforms.errors import SchemaViolation
from transforms.schema import Field, Schema

DOCUMENT: dict[str, Any] = {
    "type": "object",
    "required": ["event_id", "ts", "user"],
    "properties": {
        "event_id": {"type": "string", "pattern": "^e[0-9]+$", "maxLength": 8},
        "ts": {"type": "integer"},
        "kind": {"enum": ["click", "view"]},
        "user": {
            "type": "object",
            "required": ["id", "age"],
            "additionalProperties": False,
            "properties": {"id": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        },
    },
}


def event(number: int, **changes: Any) -> dict[str, Any]:
    record = {"event_id": f"e{number}", "ts": 1764064800 + number, "kind": "click",
              "user": {"id": "u1", "age": 30}}  # fmt: skip
    record.update(changes)
    return record


# Records a JSON Schema validator rejects, one keyword each, with the path and problem named.
REJECTED = [
    (event(1, kind="teleport"), "$.kind: must be one of ['click', 'view']"),
    (event(2, user={"id": "u1", "age": -1}), "$.user.age: must be >= 0"),
    (event(3, event_id="x3"), "$.event_id: must match pattern ^e[0-9]+$"),
    (event(4, event_id="e123456789"), "$.event_id: must be shorter than or equal to 8"),
    (event(5, user={"id": "u1"}), "$.user.age: is required"),
    (event(6, user={"id": "u1", "age": 1, "role": "x"}), "$.user.role: is not allowed"),
]
# Records JSON Schema allows that the field-by-field check refused: a field the document does
# not declare where additionalProperties allows it (the default), at the top and nested.
ALLOWED = [event(7, referrer="https://example.com"), event(8, extra={"any": ["thing", 1]})]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs events_to_bigquery file -> file with the document as --schema, once."""
    folder = tmp_path_factory.mktemp("json_schema")
    schema = folder / "schema.json"
    schema.write_text(json.dumps(DOCUMENT))
    records = [event(0)] + [record for record, _ in REJECTED] + ALLOWED
    source = folder / "in.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in records))
    code = main(
        [
            "run", "events_to_bigquery", f"--source=file://{source}",
            f"--sink=file://{folder}/out", f"--dead_letter=file://{folder}/dlq",
            f"--schema={schema}", "--event_time_field=ts",
        ]
    )  # fmt: skip
    read = [json.loads(line) for path in sorted(folder.glob("*/*.jsonl")) for line in path.open()]
    written = [row for row in read if "event_id" in row]
    dead = [row for row in read if "reason" in row]
    return {"code": code, "written": written, "dead": dead, "records": records}


def test_a_jsonschema_validator_agrees_with_every_verdict() -> None:
    # The expectations themselves, checked by the reference implementation.
    validator = jsonschema.Draft7Validator(DOCUMENT)
    assert [validator.is_valid(record) for record, _ in REJECTED] == [False] * len(REJECTED)
    assert all(validator.is_valid(record) for record in [event(0), *ALLOWED])


def test_the_run_balances(run: dict[str, Any]) -> None:
    assert run["code"] == 0
    assert len(run["written"]) + len(run["dead"]) == len(run["records"])


@pytest.mark.parametrize(("record", "message"), REJECTED, ids=[m for _, m in REJECTED])
def test_each_keyword_dead_letters_the_record_naming_the_path(
    run: dict[str, Any], record: dict[str, Any], message: str
) -> None:
    (dead,) = [d for d in run["dead"] if json.loads(d["payload_string"]) == record]
    assert dead["reason"] == "schema"
    assert dead["step"] == "parse"
    assert dead["error_message"].startswith(message)


def test_what_json_schema_allows_is_written(run: dict[str, Any]) -> None:
    written = {row["event_id"]: row for row in run["written"]}
    assert sorted(written) == ["e0", "e7", "e8"]
    assert written["e7"]["referrer"] == "https://example.com"
    # The same records were refused field by field by the BigQuery-style schema check.
    fields = Schema.from_json_schema(DOCUMENT).fields
    for record in ALLOWED:
        with pytest.raises(SchemaViolation, match="not in the schema"):
            Schema(fields).validator()(dict(record))


def test_drop_removes_undeclared_fields_of_allowed_records() -> None:
    check = Schema.from_json_schema(DOCUMENT).validator("drop")
    nested = {**DOCUMENT["properties"]["user"], "additionalProperties": True}
    open_user = Schema.from_json_schema(
        {**DOCUMENT, "properties": {**DOCUMENT["properties"], "user": nested}}
    ).validator("drop")
    assert check(event(7, referrer="x")) == event(7)
    assert open_user(event(9, user={"id": "u", "age": 1, "role": "r"})) == event(
        9, user={"id": "u", "age": 1}
    )


def test_a_document_the_validator_cannot_compile_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"properties": {"a": {"type": "string", "pattern": "("}}}))
    with pytest.raises(ValueError, match="not a usable JSON Schema"):
        Schema.load(path)


def test_the_schema_still_gives_the_fields_for_tables() -> None:
    nested = (Field("id", "STRING", "REQUIRED"), Field("age", "INTEGER", "REQUIRED"))
    user = Schema.from_json_schema(DOCUMENT).get("user")
    assert user == Field("user", "RECORD", "REQUIRED", nested)
