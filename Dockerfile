# One image for every pipeline of the suite: the Dataflow Flex Template launcher and the Beam
# SDK worker container. The suite and its dependencies are installed from the hash-locked
# requirements/image.txt, so neither the launcher VM nor the workers install anything at start.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/beam-suite:VERSION .
#   python -m pipelines template build NAME --image REGION-docker.pkg.dev/... --bucket gs://B
#
# `template build` writes the image into the template spec as both the launcher image and
# defaultEnvironment.sdkContainerImage (the workers' container).

# Google's launcher image, pinned, only to take its launcher binary.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:flex_templates_base_image_release_20260112_RC00 AS launcher

FROM apache/beam_python3.11_sdk:2.77.0

COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

WORKDIR /opt/suite

# Dependencies first (a layer that changes only with the lock), every one checked by hash.
COPY requirements/image.txt requirements/image.txt
RUN pip install --no-cache-dir --require-hashes --requirement requirements/image.txt

# The suite itself, built here from source: no dependency is resolved at this step.
COPY setup.py README.md ./
COPY transforms transforms
COPY pipelines pipelines
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip check

# The launcher runs this file with the template's parameters; `--pipeline` picks the pipeline.
# It sits alone in its folder so that nothing beside it shadows an installed module.
COPY pipelines/flex_main.py /opt/flex/flex_main.py
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/flex/flex_main.py

# The workers start the SDK harness through the Beam image's entry point, so it stays the
# ENTRYPOINT; the Flex Template service starts the launcher binary above by its path.
ENTRYPOINT ["/opt/apache/beam/boot"]
