"""``kafka://`` endpoints: the broker connection, the read and the write."""
