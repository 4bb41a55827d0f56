"""``kinesis://`` endpoints: the client and shard listing, the read and the write."""
