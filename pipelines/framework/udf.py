"""Python UDFs: a user function applied to every parsed record, as in Google's templates.

``--udf_file`` names a Python file (a local path or ``gs://``) and ``--udf_function`` a function
in it that takes a record's data (a dict) and returns::

    a dict   the record's new data, written on as usual, once the schema (if any) accepts it;
    None     the record is dropped on purpose (counted ``dropped.udf``);
    raises   the record is dead-lettered with reason ``udf_error`` and the original bytes.

Each record's failure is dead-lettered (step ``udf``) and the stream goes on: the function
raising anything, ``sys.exit`` included (reason ``udf_error``); returning something other than
a dict or None, or a dict holding values that are not JSON (bytes, sets, objects, text that is
not UTF-8) (``udf_error``); returning a record the pipeline's ``--schema`` rejects
(``udf_schema``, with unknown fields handled as ``--unknown_fields`` says).

A UDF is trusted code: it runs with the pipeline's own permissions, with no sandbox, first on the
machine that launches the pipeline (the file is executed when the graph is built, so a missing
file, a syntax error or a missing function fails before anything runs) and then on every worker.
Point ``--udf_file`` only at code you would run yourself. Its text travels with the graph: each
worker compiles it once, in ``DoFn.setup``, and needs no access to the file. The function
receives a shallow copy of the data; the record's event time is the one parsing gave it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.framework.options import Option, OptionError
from transforms.blocks import Block
from transforms.dead_letter import FAILED, ToDeadLetter, map_block
from transforms.errors import RecordError
from transforms.message import Record
from transforms.metrics import DROPPED, ReasonCounters
from transforms.schema import Schema, UnknownFields

__all__ = ["UDF_OPTIONS", "ApplyUdf", "Udf", "UdfError", "UdfSchemaViolation"]

UDF_REASON = "udf"

UDF_OPTIONS = (
    Option(
        "udf_file",
        "Python file (local path or gs://) holding a function applied to every parsed record; "
        "it returns the new record, None to drop it, or raises to dead-letter it.",
        default="",
        group="UDF",
        label="Python UDF file",
    ),
    Option(
        "udf_function",
        "Name of the function in --udf_file, e.g. transform.",
        default="",
        regex=r"[A-Za-z_][A-Za-z0-9_]*",
        group="UDF",
        label="Python UDF function name",
        parent_name="udf_file",
    ),
)


class UdfError(RecordError):
    """The UDF raised, or returned something other than a dict of JSON values or None."""

    reason = "udf_error"


class UdfSchemaViolation(UdfError):
    """The UDF returned a record the schema rejects."""

    reason = "udf_schema"


_JSON_SCALARS = (str, int, float, bool, type(None))


def _not_json(value: Any, path: str) -> str | None:
    """Returns where and why ``value`` is not JSON data, or None when it is."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"{path or 'the record'}: text that is not UTF-8"
        return None
    if isinstance(value, _JSON_SCALARS):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path or 'the record'}: key {key!r} is not text"
            found = _not_json(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _not_json(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return f"{path or 'the record'}: a {type(value).__name__} is not JSON"


def _read_text(path: str) -> str:
    """Reads a local or ``gs://`` file as UTF-8 through Beam's file systems."""
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8")


@dataclass(frozen=True)
class Udf:
    """A validated UDF: its file, its function's name and the file's text.

    Attributes:
        path: where the file was read (for messages and tracebacks).
        function: the function's name.
        source: the file's Python text.
    """

    path: str
    function: str
    source: str

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> Udf | None:
        """Reads and checks ``--udf_file``/``--udf_function``; ``None`` when no UDF is set.

        Raises:
            OptionError: the file is set without a function, cannot be read, does not compile
                or has no such function.
        """
        path, function = values["udf_file"], values["udf_function"]
        if not path:  # (a function without a file is refused by the options' parent rule)
            return None
        if not function:
            raise OptionError("--udf_file needs --udf_function: the function to apply")
        try:
            source = _read_text(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise OptionError(f"--udf_file={path}: cannot be read ({exc})") from None
        udf = cls(path, function, source)
        try:
            udf.load()
        except UdfError as exc:
            raise OptionError(f"--udf_file={path}: {exc}") from None
        return udf

    def load(self) -> Callable[[dict[str, Any]], Any]:
        """Compiles the file and returns the function; raises `UdfError`."""
        namespace: dict[str, Any] = {"__name__": "udf", "__file__": self.path}
        try:
            exec(compile(self.source, self.path, "exec"), namespace)
        except (Exception, SystemExit) as exc:  # the user's module failed to load: say how
            raise UdfError(f"loading the file failed: {type(exc).__name__}: {exc}") from exc
        function = namespace.get(self.function)
        if not callable(function):
            defined = sorted(k for k, v in namespace.items() if callable(v) and k[0] != "_")
            raise UdfError(f"no function {self.function!r}; the file defines {defined}")
        return function


@beam.typehints.with_output_types(Block)
class _ApplyUdfFn(beam.DoFn):
    """A block of `Record`s -> the block of the UDF's records; failures tagged ``failed``."""

    def __init__(self, udf: Udf, schema: Schema | None, unknown_fields: UnknownFields) -> None:
        self._udf = udf
        self._schema = schema
        self._unknown_fields = unknown_fields

    def setup(self) -> None:
        self._function = self._udf.load()
        self._dropped = ReasonCounters(DROPPED)
        self._validate = (
            self._schema.validator(self._unknown_fields) if self._schema is not None else None
        )

    def process(self, block: list[Record]) -> Iterator[Any]:
        applied, failures = map_block(block, self._applied, UdfError)
        yield from failures
        dropped = len(block) - len(applied) - len(failures)
        if dropped:
            self._dropped.inc(UDF_REASON, dropped)
        if applied:
            yield applied

    def _applied(self, record: Record) -> Record | None:
        """Returns the UDF's record of ``record`` (None: dropped); raises `UdfError`."""
        result = self._apply(record.data)
        return None if result is None else Record(result, record.origin, record.event_time)

    def _apply(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Returns the UDF's record of ``data`` (None: dropped); raises `UdfError`."""
        name = self._udf.function
        try:
            result = self._function(dict(data))
        except (Exception, SystemExit) as exc:  # the user's function failed: dead-letter it
            raise UdfError(f"{name} raised {type(exc).__name__}: {exc}") from exc
        if result is None:
            return None
        if not isinstance(result, dict):
            raise UdfError(f"{name} returned {type(result).__name__}; expected a dict or None")
        problem = _not_json(result, "")
        if problem is not None:
            raise UdfError(f"{name} returned a record that is not JSON data: {problem}")
        if self._validate is not None:
            try:
                result = self._validate(result)
            except RecordError as exc:  # SchemaViolation, or a value the schema cannot read
                message = f"{name} returned a record the schema rejects: {exc}"
                raise UdfSchemaViolation(message) from exc
        return result


class ApplyUdf(beam.PTransform):
    """Applies a `Udf` to the data of every `Record` of a block, and checks what it returns.

    Input: `Block`s of `Record`s. Returns ``(blocks, errors)``: Blocks of the UDF's records
    (with the original message and event time kept), and the dead-letter dicts of the records
    it failed on (step ``udf``; reason ``udf_error``, or ``udf_schema`` for a record the schema
    rejects).

    Args:
        pipeline: the pipeline's name, for dead-letter records.
        udf: the function to apply.
        schema: the schema the UDF's records must match, if any.
        unknown_fields: what the schema does with fields it does not declare.
    """

    def __init__(
        self,
        pipeline: str,
        udf: Udf,
        schema: Schema | None = None,
        unknown_fields: UnknownFields = "reject",
    ) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._udf = udf
        self._schema = schema
        self._unknown_fields = unknown_fields

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        results = blocks | "Apply" >> beam.ParDo(
            _ApplyUdfFn(self._udf, self._schema, self._unknown_fields)
        ).with_outputs(FAILED, main="applied")
        errors = results[FAILED] | "ToDeadLetter" >> ToDeadLetter(self._pipeline, "udf")
        return results.applied, errors
