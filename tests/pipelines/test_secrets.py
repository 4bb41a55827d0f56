"""Secrets never printed: the commands' output, errors, logs and dead letters redact them."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.framework import demo
from pipelines.framework.cli import main
from tests.pipelines.test_templates import DLQ, SINK, dataflow_stub  # noqa: F401 (fixture)
from transforms.dead_letter import error_record
from transforms.io.endpoint import is_secret, redact
from transforms.redaction import RedactSecrets

SECRET = "Hunter2 Zq9x Wv7k"  # spaces: URL-encoded in one form, not in another
TOKEN = "tok-5f3a9c"

# Each URI form a secret takes, with the secret it holds.
FORMS = [
    pytest.param(f"redis://default:{quote(SECRET)}@127.0.0.1:6390/0", id="userinfo-encoded"),
    pytest.param(f"redis://default:{SECRET}@127.0.0.1:6390/0", id="userinfo-space"),
    pytest.param(f"redis://{TOKEN}@127.0.0.1:6390/0", id="token-as-user"),
    pytest.param(f"kafka://127.0.0.1:19093/t?sasl.password={quote(SECRET)}", id="sasl-password"),
    pytest.param(f"kafka://127.0.0.1:19093/t?sasl.password={SECRET}&x=1", id="query-space"),
    pytest.param(f"x://h/p?api_key={TOKEN}&clientSecret={TOKEN}", id="key-and-secret-params"),
]


def assert_hidden(text: str) -> None:
    for secret in (*SECRET.split(), quote(SECRET), TOKEN):
        assert secret not in text


@pytest.mark.parametrize("uri", FORMS)
def test_redact_hides_every_form(uri: str) -> None:
    assert_hidden(redact(uri))
    assert_hidden(redact(f"error: {uri!r} failed; then --sink={uri} and {json.dumps(uri)}"))
    assert "127.0.0.1" in redact(uri) or "://h/" in redact(uri)  # the host is still shown


@pytest.mark.parametrize(
    "text",
    [
        f"--redis_password={SECRET!r} --sasl.password={TOKEN}",
        f"AUTH_TOKEN={TOKEN} PGPASSWORD={TOKEN}",
        json.dumps({"password": SECRET, "apiKey": TOKEN, "nested": {"access_token": TOKEN}}),
        repr({"secret": SECRET, "private_key": TOKEN}),
    ],
)
def test_redact_hides_secret_named_values(text: str) -> None:
    assert_hidden(redact(text))


def test_the_one_rule_for_secret_names() -> None:
    secret = ["password", "sasl.password", "--redis_password", "apiKey", "access_key",
              "client_secret", "AUTH_TOKEN", "passwd", "secret"]  # fmt: skip
    plain = ["key", "key_field", "key_columns", "password_env", "password_secret", "sink"]
    assert [name for name in secret if not is_secret(name)] == []
    assert [name for name in plain if is_secret(name)] == []


@pytest.mark.parametrize("uri", FORMS)
def test_template_launch_masks_secrets_in_its_gcloud_line(
    uri: str,
    dataflow_stub: tuple[str, list[Any]],  # noqa: F811 (the imported fixture)
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint, requests = dataflow_stub
    argv = [
        "template", "launch", "events_to_bigquery", "--project", "proj-x",
        "--region", "us-central1", "--bucket", "gs://bucket-x", "--job_name", "events-1",
        "--parameters", f"^;^source={uri};sink={SINK};dead_letter={DLQ}",
        "--api_endpoint", endpoint,
    ]  # fmt: skip
    assert main(argv) == 0
    ((_, body),) = requests
    assert body["launchParameter"]["parameters"]["source"] == uri  # sent as given
    out, err = capsys.readouterr()
    assert "gcloud dataflow flex-template run" in out
    assert_hidden(out + err)


def test_template_launch_masks_a_secret_named_parameter_in_errors(
    dataflow_stub: tuple[str, list[Any]],  # noqa: F811 (the imported fixture)
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint, requests = dataflow_stub
    argv = [
        "template", "launch", "events_to_bigquery", "--project", "proj-x",
        "--region", "us-central1", "--bucket", "gs://bucket-x",
        "--parameters", f"source={SINK},sink={SINK},dead_letter={DLQ},sasl_password={TOKEN}",
        "--api_endpoint", endpoint,
    ]  # fmt: skip
    assert main(argv) == 2
    assert requests == []
    assert_hidden("".join(capsys.readouterr()))


@pytest.mark.parametrize("uri", FORMS)
def test_run_errors_mask_the_secret(
    uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An unknown parameter makes every sink refuse the URI, naming it in the error.
    bad = uri + ("&" if "?" in uri else "?") + "colour=red"
    argv = [
        "run", "events_to_bigquery", "--source=generator://events?count=1",
        f"--sink={bad}", f"--dead_letter=file://{tmp_path}/d",
    ]  # fmt: skip
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error:")
    assert_hidden(out + err)


def test_a_run_report_masks_the_password_of_its_sink(
    redis_server: Any, unique_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The default user of the test server has no password: any password is accepted.
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"event_id": "e1", "ts": 1764064800, "user_id": "u1", "event_type": "click"})
        + "\n"
    )
    sink = (
        f"redis://default:{quote(SECRET)}@127.0.0.1:6390/0?mode=hash&key={unique_name}:{{event_id}}"
    )
    argv = [
        "run", "events_to_bigquery", f"--source=file://{source}", f"--sink={sink}",
        f"--dead_letter=file://{tmp_path}/d",
    ]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "default:***@127.0.0.1:6390" in out
    assert_hidden(out + err)


def test_flex_template_entry_point_masks_the_secret_in_its_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "pipelines.flex_main", "--pipeline=events_to_bigquery",
            "--source=generator://events?count=1",
            f"--sink=redis://default:{SECRET}@127.0.0.1:6390/0?colour=red",
            f"--dead_letter=file://{tmp_path}/d",
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "EndpointError" in result.stderr
    assert_hidden(result.stdout + result.stderr)


def test_demo_masks_the_password_of_its_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "find_redis", lambda: f"redis://:{quote(SECRET)}@127.0.0.1:6390/0")
    argv = demo.demo_argv([f"--output={tmp_path}"])
    assert any(quote(SECRET) in arg for arg in argv)  # the pipeline gets the password
    assert_hidden("".join(capsys.readouterr()))


@pytest.mark.parametrize("uri", FORMS)
def test_log_records_are_redacted(uri: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("transforms.io.test_secrets")
    logger.addHandler(handler)
    try:
        logger.warning("cannot reach %s", uri)
        try:
            raise ConnectionError(f"refused: {uri}")
        except ConnectionError:
            logger.exception("write failed for %s", uri)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "cannot reach" in text and "ConnectionError" in text
    assert_hidden(text)


@pytest.mark.parametrize("uri", FORMS)
def test_dead_letter_error_texts_are_redacted(uri: str) -> None:
    record = error_record(
        {"a": 1},
        pipeline="p",
        step="sink",
        reason="sink_unavailable",
        error_type="ConnectionError",
        error_message=f"cannot write to {uri}",
        stacktrace=f'Traceback...\nConnectionError: {uri}\n  url="{uri}"',
    )
    assert "cannot write to" in record["error_message"]
    assert_hidden(record["error_message"] + record["stacktrace"])


# Characters a password may hold as typed (not URL-encoded) without changing where urlsplit
# ends the authority: anything but "/", "?", "#" and line ends.
TYPED = st.text(
    st.characters(blacklist_characters="/?#\r\n", blacklist_categories=("Cs",)), max_size=16
)


@settings(max_examples=300, deadline=None)
@given(secret=TYPED, encoded=st.text(max_size=16))
def test_no_form_of_a_uri_secret_survives(secret: str, encoded: str) -> None:
    typed, escaped = "PW#" + secret, quote("TK#" + encoded, safe="")
    forms = [
        f"redis://user:{typed.replace('#', '@')}@host:1/0",
        f"redis://{escaped}@host:1/0",
        f"kafka://host:1/t?sasl.password={escaped}&x=1",
        f"kafka://user:{escaped}@host:1/t?api_key={escaped}",
    ]
    for form in forms:
        for shown in (redact(form), redact(f"error: {form!r}"), redact(json.dumps({"u": form}))):
            assert escaped not in shown
            assert typed.replace("#", "@") not in shown
