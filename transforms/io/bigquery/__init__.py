"""``bigquery://`` and ``bigquery-replica://`` sinks, the ``bigquery://`` source, their client."""
