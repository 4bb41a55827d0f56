"""Change data capture: normalize Debezium and Datastream events, apply them in order per key."""
