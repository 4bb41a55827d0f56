# One image for the suite: the Beam Python SDK worker with the suite installed.
# (The Flex Template launcher layer is added when the templates are generated.)
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/suite
COPY setup.py README.md ./
COPY transforms ./transforms
COPY pipelines ./pipelines
RUN pip install --no-cache-dir .

ENTRYPOINT ["/opt/apache/beam/boot"]
