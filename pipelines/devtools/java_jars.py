"""The Java expansion-service jars of Beam's cross-language IO, resolved by Beam and pre-cached.

Building a pipeline graph with Beam's Java ``ReadFromKafka`` (``impl=java`` of the Kafka source)
or Java Kinesis IO (``impl=java`` of the Kinesis source) starts a Java expansion service from a
jar that Beam downloads from Maven Central into ``JavaJarServer.JAR_CACHE``
(``~/.apache_beam/cache/jars``) unless it is already there. The ``java`` target of the
Dockerfile runs this module at build time so that the image holds those jars and the launcher
downloads nothing when it builds the graph::

    python -m pipelines.devtools.java_jars         # download into Beam's cache; print what is there
    python -m pipelines.devtools.java_jars --list  # only print the URLs and cache paths (offline)
    python -m pipelines.devtools.java_jars --check # fail unless every jar is cached (offline)

Nothing here names a jar: each IO's Gradle target comes from the factory Beam itself calls
when the transform has no ``expansion_service`` argument, and `JavaJarServer.path_to_beam_jar`
turns it into the released jar's URL for the installed Beam version, as Beam does at run time.
The cache file is named as `JavaJarServer.local_jar` names it (the URL's last segment), so a jar
fetched from a mirror (``--maven_repository_url``) is found by Beam all the same.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import posixpath
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_IOS",
    "EXPANSION_SERVICES",
    "Jar",
    "cache_jars",
    "cached_path",
    "main",
    "missing_jars",
    "resolve_jars",
]


def _kafka_service() -> Any:
    from apache_beam.io import kafka

    return kafka.default_io_expansion_service()


def _kinesis_service() -> Any:
    from apache_beam.io import kinesis

    return kinesis.default_io_expansion_service()


def _storage_write_service() -> Any:
    from apache_beam.io.gcp.bigquery import StorageWriteToBigQuery

    # Beam builds this service inline in the constructor; no other public name holds it.
    return StorageWriteToBigQuery(table="project:dataset.table")._expansion_service


EXPANSION_SERVICES: dict[str, Callable[[], Any]] = {
    "kafka": _kafka_service,
    "kinesis": _kinesis_service,
    "storage_write": _storage_write_service,
}
"""Each cross-language IO by name, and the Beam factory of its default expansion service.

Each factory returns Beam's ``BeamJarExpansionService``, whose ``gradle_target`` names the jar.
Building one resolves the jar's URL only: nothing is downloaded or started.
"""

DEFAULT_IOS: tuple[str, ...] = ("kafka", "kinesis")
"""The IO whose Java implementation a pipeline of the suite offers (``impl=java``).

``storage_write`` (``WriteToBigQuery(method=STORAGE_WRITE_API)``) is not used by the suite; it
can be cached on request with ``--io storage_write``.
"""


@dataclass(frozen=True)
class Jar:
    """One expansion-service jar.

    Attributes:
        ios: The IO names (keys of `EXPANSION_SERVICES`) that start this jar.
        gradle_target: Beam's Gradle target for the jar, as Beam's factory names it.
        url: Where Beam fetches the jar from (or a local path, for a Beam built from source).
    """

    ios: tuple[str, ...]
    gradle_target: str
    url: str

    @property
    def file_name(self) -> str:
        """The jar's file name in the cache: the URL's last segment, as Beam names it."""
        return posixpath.basename(urlsplit(self.url).path)


def resolve_jars(
    ios: Iterable[str] = DEFAULT_IOS, maven_repository_url: str | None = None
) -> list[Jar]:
    """Asks Beam which jars the given IO start, for the installed Beam version.

    Pure: reads Beam's constants and builds URLs; nothing is downloaded, no Java is started.

    Args:
        ios: IO names, keys of `EXPANSION_SERVICES`.
        maven_repository_url: A Maven repository to fetch from instead of Maven Central (a
            mirror); the cached file name, and so Beam's lookup at run time, are the same.

    Returns:
        One `Jar` per distinct jar, in the order the IO were given.

    Raises:
        KeyError: an IO name that is not in `EXPANSION_SERVICES`.
    """
    from apache_beam.utils.subprocess_server import JavaJarServer

    jars: dict[str, Jar] = {}
    for io in dict.fromkeys(ios):  # each IO once, in order
        if io not in EXPANSION_SERVICES:
            raise KeyError(f"unknown IO {io!r}; one of: {', '.join(EXPANSION_SERVICES)}")
        target = EXPANSION_SERVICES[io]().gradle_target
        url = JavaJarServer.path_to_beam_jar(target, maven_repository_url=maven_repository_url)
        known = jars.get(url)
        jars[url] = Jar(ios=(*known.ios, io) if known else (io,), gradle_target=target, url=url)
    return list(jars.values())


def default_cache_dir() -> str:
    """Returns Beam's jar cache (``~/.apache_beam/cache/jars`` of the current user)."""
    from apache_beam.utils.subprocess_server import JavaJarServer

    return str(JavaJarServer.JAR_CACHE)


def cached_path(jar: Jar, cache_dir: str | None = None) -> str:
    """Returns where Beam looks for ``jar`` before it downloads it.

    Args:
        jar: A resolved jar.
        cache_dir: The cache folder; Beam's own (`default_cache_dir`) when None.

    Returns:
        The URL itself when it is a local file (a Beam built from source), else the file of
        that name in the cache.
    """
    if os.path.exists(jar.url):
        return jar.url
    return os.path.join(cache_dir or default_cache_dir(), jar.file_name)


def missing_jars(jars: Iterable[Jar], cache_dir: str | None = None) -> list[Jar]:
    """Returns the jars that are not in the cache (Beam would download them)."""
    return [jar for jar in jars if not os.path.isfile(cached_path(jar, cache_dir))]


def cache_jars(jars: Iterable[Jar], cache_dir: str | None = None) -> list[str]:
    """Downloads the jars that are not cached yet, through Beam's own `JavaJarServer.local_jar`.

    Beam falls back to Google's Maven Central mirror when Maven Central is unreachable.

    Args:
        jars: Resolved jars.
        cache_dir: The cache folder; Beam's own when None.

    Returns:
        The local path of each jar.

    Raises:
        RuntimeError: a jar could be fetched from neither Maven Central nor the mirror.
    """
    from apache_beam.utils.subprocess_server import JavaJarServer

    cache_dir = cache_dir or default_cache_dir()
    return [str(JavaJarServer.local_jar(jar.url, cache_dir=cache_dir)) for jar in jars]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.devtools.java_jars",
        description="Pre-cache the expansion-service jars of Beam's Java cross-language IO.",
    )
    parser.add_argument(
        "--io",
        action="append",
        choices=sorted(EXPANSION_SERVICES),
        help=f"an IO whose jar to cache (repeatable; default: {', '.join(DEFAULT_IOS)})",
    )
    parser.add_argument("--cache_dir", help="default: Beam's cache, ~/.apache_beam/cache/jars")
    parser.add_argument("--maven_repository_url", help="a Maven mirror (default: Maven Central)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="print URLs and paths, download none")
    mode.add_argument("--check", action="store_true", help="fail unless every jar is cached")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: The arguments after the program name; `sys.argv` when None.

    Returns:
        0 on success; 1 when ``--check`` finds a jar missing.
    """
    import apache_beam

    args = _parser().parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir()
    jars = resolve_jars(args.io or DEFAULT_IOS, args.maven_repository_url)
    print(f"Beam {apache_beam.__version__}, jar cache {cache_dir}")
    if args.list:
        for jar in jars:
            print(f"{','.join(jar.ios)}: {jar.url} -> {cached_path(jar, cache_dir)}")
        return 0
    if args.check:
        missing = missing_jars(jars, cache_dir)
        for jar in jars:
            state = "MISSING" if jar in missing else "cached"
            print(f"{','.join(jar.ios)}: {state} {cached_path(jar, cache_dir)}")
        return 1 if missing else 0
    for jar, path in zip(jars, cache_jars(jars, cache_dir), strict=True):
        size = os.path.getsize(path)
        print(f"{','.join(jar.ios)}: {path} ({size} bytes, sha256 {_sha256(path)}) from {jar.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
