"""Reusable Apache Beam transforms: parse, dead-letter, and the sources and sinks in `io`."""
