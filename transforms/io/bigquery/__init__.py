"""``bigquery://`` and ``bigquery-replica://`` sinks, the ``bigquery://`` source, and their client."""
