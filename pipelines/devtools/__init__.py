"""Developer tooling: the local servers, generated docs, cached Java jars."""
