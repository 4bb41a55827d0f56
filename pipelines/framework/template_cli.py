"""``python -m pipelines template build | validate | launch``: a pipeline's Flex Template.

Everything comes from the installed package: the metadata is generated from the pipeline's
declaration (`pipelines.framework.templates.template_metadata`), so a wheel install needs no
file of the checkout.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path

from pipelines.catalog import CATALOG, get_pipeline
from pipelines.framework.launch import ENVIRONMENT_FLAGS, Launch, gcloud_command, launch
from pipelines.framework.options import ArgumentParser
from pipelines.framework.templates import (
    TemplateError,
    build_spec,
    spec_gcs_path,
    template_metadata,
    validate_metadata,
    validate_spec,
)

__all__ = ["main"]


def _pairs(text: str) -> dict[str, str]:
    """Parses ``k=v,k2=v2`` (or gcloud's ``^;^k=v;k2=v2`` for values with commas)."""
    delimiter = ","
    match = re.match(r"\^(.)\^", text)
    if match:
        delimiter, text = match[1], text[match.end() :]
    pairs = {}
    for item in filter(None, text.split(delimiter)):
        key, sep, value = item.partition("=")
        if not sep:
            raise TemplateError(f"{item!r}: expected KEY=VALUE")
        pairs[key] = value
    return pairs


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m pipelines template")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    pipelines = ", ".join(sorted(CATALOG))
    build = commands.add_parser("build", help="write a pipeline's template spec file")
    build.add_argument("name", help=f"the catalog pipeline: {pipelines}")
    build.add_argument(
        "--image",
        required=True,
        help="the image built from the Dockerfile, REGION-docker.pkg.dev/PROJECT/REPO/NAME:TAG",
    )
    build.add_argument(
        "--bucket", required=True, help="gs://BUCKET for the spec file, temporary and staging files"
    )
    build.add_argument(
        "--output", type=Path, help="the spec file to write (default: build/templates/NAME.json)"
    )
    validate = commands.add_parser(
        "validate", help="check a pipeline's template metadata (from its declaration) or a spec"
    )
    validate.add_argument("name", nargs="?", help=f"one pipeline (default: all): {pipelines}")
    validate.add_argument("--spec", type=Path, help="a spec file to check instead")
    run = commands.add_parser("launch", help="launch a pipeline's template on Dataflow")
    run.add_argument("name", help=f"the catalog pipeline: {pipelines}")
    run.add_argument("--project", required=True, help="the Google Cloud project of the job")
    run.add_argument("--region", required=True, help="the Dataflow region, e.g. us-central1")
    run.add_argument("--bucket", required=True, help="gs://BUCKET the spec was uploaded to")
    run.add_argument(
        "--parameters",
        type=_pairs,
        default={},
        help="the pipeline's options, k=v,k2=v2 (^;^k=v;k2=v2 for values with commas)",
    )
    run.add_argument(
        "--environment",
        type=_pairs,
        default={},
        help=f"launch environment, k=v,...: {', '.join(ENVIRONMENT_FLAGS)}",
    )
    run.add_argument(
        "--job_name", default="", help="the job's name (default: PIPELINE-YYYYMMDD-HHMMSS)"
    )
    run.add_argument(
        "--validate_only",
        action="store_true",
        help="ask Dataflow to check the launch without starting a job",
    )
    run.add_argument(
        "--update",
        action="store_true",
        help="replace the running streaming job of the same --job_name in place, keeping its state",
    )
    run.add_argument(
        "--transform_name_mappings",
        type=_pairs,
        default={},
        help="with --update: old=new step names, for steps renamed since the running job started",
    )
    run.add_argument("--api_endpoint", help="another Dataflow API endpoint (tests)")
    return parser


def _validate(name: str | None, spec_file: Path | None) -> str:
    """Checks a spec file, or the metadata of one pipeline (default: every pipeline)."""
    if spec_file is not None:
        validate_spec(json.loads(spec_file.read_text(encoding="utf-8")))
        return f"{spec_file}: valid"
    names = [get_pipeline(name).name] if name else sorted(CATALOG)
    for each in names:
        validate_metadata(template_metadata(get_pipeline(each)))
    return f"valid: {', '.join(names)}"


def main(argv: Sequence[str]) -> int:
    """Runs ``python -m pipelines template build|validate|launch``; returns the code.

    Raises:
        TemplateError, KeyError: a template, parameter or pipeline name that is not valid.
    """
    args = _parser().parse_args(list(argv))
    if args.command == "validate":
        print(_validate(args.name, args.spec))
        return 0
    if args.command == "build":
        document = build_spec(get_pipeline(args.name), args.image, args.bucket)
        validate_spec(document)
        output = args.output or Path("build", "templates", f"{args.name}.json")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {output}; upload it with:")
        print(f"  gcloud storage cp {output} {spec_gcs_path(args.name, args.bucket)}")
        return 0
    request = Launch(
        pipeline=get_pipeline(args.name).name,
        project=args.project,
        region=args.region,
        bucket=args.bucket,
        parameters=args.parameters,
        job_name=args.job_name,
        environment=args.environment,
        validate_only=args.validate_only,
        update=args.update,
        transform_name_mappings=args.transform_name_mappings,
    )
    if request.validate_only:
        print("gcloud has no validate-only mode; this starts the same job with gcloud:")
    else:
        print("same launch with gcloud:")
    print(f"  {gcloud_command(request)}")
    response = launch(request, args.api_endpoint)
    job = response.get("job", {})
    print(f"launched {job.get('name', request.job_name)}: job id {job.get('id', '(none)')}")
    return 0
