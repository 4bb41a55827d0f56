# One image for every pipeline of the suite: the Dataflow Flex Template launcher and the Beam
# SDK worker container. The suite and its dependencies are installed from the hash-locked
# requirements/image.txt, so neither the launcher VM nor the workers install anything at start.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/beam-suite:VERSION .
#   docker build --target java -t REGION-docker.pkg.dev/PROJECT/REPO/beam-suite:VERSION-java .
#   python -m pipelines template build NAME --image REGION-docker.pkg.dev/... --bucket gs://B
#
# `template build` writes the image into the template spec as both the launcher image and
# defaultEnvironment.sdkContainerImage (the workers' container).
#
# Targets: `base` (also the default, the last stage) holds no Java; `java` adds a headless JRE
# and Beam's expansion-service jars for the Java Kafka and Kinesis IO (`impl=java`), so that
# building the graph at launch starts the expansion service without downloading anything.

# Google's launcher image, pinned, only to take its launcher binary.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:flex_templates_base_image_release_20260112_RC00 AS launcher

# The expansion-service jars, in a stage of their own so that a change to the suite does not
# download them again. Beam itself says which jars (python -m pipelines.devtools.java_jars --list)
# and fetches them into its cache, ~/.apache_beam/cache/jars; a Maven mirror may be given instead.
FROM apache/beam_python3.11_sdk:2.77.0 AS jars
ARG MAVEN_REPOSITORY_URL=https://repo.maven.apache.org/maven2
WORKDIR /opt/jars
COPY pipelines/__init__.py pipelines/
COPY pipelines/devtools/__init__.py pipelines/devtools/java_jars.py pipelines/devtools/
RUN python -m pipelines.devtools.java_jars --maven_repository_url "${MAVEN_REPOSITORY_URL}"

FROM apache/beam_python3.11_sdk:2.77.0 AS base

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

# The `java` target: the image above plus a pinned headless JRE from the base image's Debian and
# the cached jars. Override both build arguments together when the Debian release moves on.
FROM base AS java
ARG JRE_PACKAGE=openjdk-17-jre-headless
ARG JRE_VERSION=17.0.21.1+2-1~deb12u1
RUN apt-get update \
    && apt-get install -y --no-install-recommends "${JRE_PACKAGE}=${JRE_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && java -version
COPY --from=jars /root/.apache_beam/cache/jars /root/.apache_beam/cache/jars
# Fails the build unless the suite's own Beam finds every jar in its cache (no network).
RUN python -m pipelines.devtools.java_jars --check

# The default target: the image without Java.
FROM base
