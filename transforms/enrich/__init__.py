"""Enrich (stream-table join) from Redis, a side-input table or a CDC-fed table."""
