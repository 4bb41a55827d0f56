"""Launching a pipeline's Flex Template on Dataflow, and the same launch as a gcloud command.

`Launch` is one launch request, checked at construction against the template's metadata
(`pipelines.framework.templates.check_parameters`, the metadata generated from the
declarations); `launch` calls ``projects.locations.flexTemplates.launch``; `gcloud_command`
prints the equivalent ``gcloud dataflow flex-template run``.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.catalog import get_pipeline
from pipelines.framework.templates import (
    SELECTOR,
    TemplateError,
    check_bucket,
    check_parameters,
    parse_strictly,
    spec_gcs_path,
    template_metadata,
)
from transforms.io.endpoint import redact_option

__all__ = ["ENVIRONMENT_FLAGS", "Launch", "gcloud_command", "launch"]

_JOB_NAME = re.compile(r"[a-z]([-a-z0-9]{0,62}[a-z0-9])?")
# Launch environment fields (FlexTemplateRuntimeEnvironment) and their gcloud flags.
ENVIRONMENT_FLAGS = {
    "tempLocation": "--temp-location",
    "stagingLocation": "--staging-location",
    "serviceAccountEmail": "--service-account-email",
    "maxWorkers": "--max-workers",
    "numWorkers": "--num-workers",
    "machineType": "--worker-machine-type",
    "network": "--network",
    "subnetwork": "--subnetwork",
}


@dataclass(frozen=True)
class Launch:
    """One launch of a pipeline's Flex Template, validated at construction.

    Attributes:
        pipeline: the catalog pipeline (the template).
        project: the Google Cloud project.
        region: the Dataflow region, e.g. ``us-central1``.
        bucket: ``gs://BUCKET`` where `build_spec`'s file was uploaded.
        parameters: the pipeline's options, ``{"source": "pubsub://...", ...}``; the
            ``pipeline`` parameter is added.
        job_name: the job's name; by default ``PIPELINE-YYYYMMDD-HHMMSS`` (UTC).
        environment: launch environment fields (keys of `ENVIRONMENT_FLAGS`).
        validate_only: ask the service to validate the launch without starting a job.
        update: replace the running job of the same name in place, keeping its state (a
            streaming job; Dataflow refuses a graph it cannot map onto the running one).
        transform_name_mappings: for an update, ``{old step name: new step name}`` of the
            steps renamed since the running job was launched (a removed step maps to ``""``).
    """

    pipeline: str
    project: str
    region: str
    bucket: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    job_name: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    validate_only: bool = False
    update: bool = False
    transform_name_mappings: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_bucket(self.bucket)
        if self.transform_name_mappings and not self.update:
            raise TemplateError("--transform_name_mappings applies to an update: add --update")
        if not self.job_name:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            object.__setattr__(self, "job_name", f"{self.pipeline.replace('_', '-')}-{stamp}")
        if not _JOB_NAME.fullmatch(self.job_name):
            raise TemplateError(f"job name {self.job_name!r}: lowercase letters, digits, '-'")
        unknown = sorted(set(self.environment) - set(ENVIRONMENT_FLAGS))
        if unknown:
            raise TemplateError(
                f"environment {unknown}: supported fields are {', '.join(ENVIRONMENT_FLAGS)}"
            )
        if SELECTOR in self.parameters:
            raise TemplateError(f"{SELECTOR!r} is set by the command: leave it out")
        check_parameters(template_metadata(get_pipeline(self.pipeline)), self.all_parameters)

    @property
    def all_parameters(self) -> dict[str, str]:
        """The parameters sent: the pipeline selector, then the pipeline's options."""
        return {SELECTOR: self.pipeline, **self.parameters}

    @property
    def template_path(self) -> str:
        """The spec file's ``gs://`` path."""
        return spec_gcs_path(self.pipeline, self.bucket)

    def body(self) -> dict[str, Any]:
        """Returns the JSON body of ``flexTemplates:launch``."""
        environment = {
            key: int(value) if key in ("maxWorkers", "numWorkers") else value
            for key, value in self.environment.items()
        }
        return {
            "launchParameter": {
                "jobName": self.job_name,
                "containerSpecGcsPath": self.template_path,
                "parameters": self.all_parameters,
                "environment": environment,
                **({"update": True} if self.update else {}),
                **(
                    {"transformNameMappings": dict(self.transform_name_mappings)}
                    if self.transform_name_mappings
                    else {}
                ),
            },
            "validateOnly": self.validate_only,
        }


def launch(request: Launch, api_endpoint: str | None = None) -> dict[str, Any]:
    """Calls the Dataflow ``flexTemplates.launch`` REST API; returns its response as JSON.

    Args:
        request: the validated launch.
        api_endpoint: another API endpoint; a plain ``http://`` one (a local stub) is called
            without credentials, like the emulators. Default: Dataflow, with the application
            default credentials.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.dataflow_v1beta3 import FlexTemplatesServiceClient, types

    local = api_endpoint is not None and api_endpoint.startswith("http://")
    client = FlexTemplatesServiceClient(
        transport="rest",
        client_options={"api_endpoint": api_endpoint} if api_endpoint else None,
        credentials=AnonymousCredentials() if local else None,
    )
    document = {"projectId": request.project, "location": request.region, **request.body()}
    message = parse_strictly("LaunchFlexTemplateRequest", document)
    response = client.launch_flex_template(request=message)
    return json.loads(types.LaunchFlexTemplateResponse.to_json(response))


def gcloud_command(request: Launch) -> str:
    """Returns the same launch as a ``gcloud dataflow flex-template run`` command.

    gcloud has no validate-only mode (``--validate-only`` is no flag of ``flex-template run``):
    the command is the same for a validate-only launch, and starts a job.
    Secrets are masked (`transforms.io.endpoint.redact_option`): passwords in URIs and the
    values of secret-named parameters read ``***``; put them back before running it.
    """
    words = [
        "gcloud", "dataflow", "flex-template", "run", request.job_name,
        f"--template-file-gcs-location={request.template_path}",
        f"--project={request.project}", f"--region={request.region}",
    ]  # fmt: skip
    pairs = [f"{key}={redact_option(key, value)}" for key, value in request.all_parameters.items()]
    text = "".join(pairs)
    # gcloud splits on commas unless the list starts with ^DELIMITER^.
    delimiter = next(char for char in ",~;|#@" if char not in text)
    prefix = "" if delimiter == "," else f"^{delimiter}^"
    words.append(f"--parameters={prefix}{delimiter.join(pairs)}")
    words += [
        f"{ENVIRONMENT_FLAGS[key]}={redact_option(key, value)}"
        for key, value in request.environment.items()
    ]
    if request.update:
        words.append("--update")
    if request.transform_name_mappings:
        mappings = ",".join(f"{old}={new}" for old, new in request.transform_name_mappings.items())
        words.append(f"--transform-name-mappings={mappings}")
    return " ".join(shlex.quote(word) for word in words)
