"""``bigquery://`` and ``bigquery-replica://`` sinks and their client."""
