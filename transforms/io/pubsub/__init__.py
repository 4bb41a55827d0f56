"""``pubsub://`` endpoints: subscriptions in, topics out."""
