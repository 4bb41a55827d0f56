output "topic_id" {
  description = "ID of the input topic (projects/P/topics/T)."
  value       = google_pubsub_topic.input.id
}

output "topic_name" {
  description = "Name of the input topic."
  value       = google_pubsub_topic.input.name
}

output "dead_letter_topic_id" {
  description = "ID of the dead-letter topic."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_hold_subscription_id" {
  description = "ID of the subscription keeping dead-lettered messages."
  value       = google_pubsub_subscription.dead_letter_hold.id
}

output "subscription_ids" {
  description = "IDs of the subscriptions (name => projects/P/subscriptions/S)."
  value       = { for name, s in google_pubsub_subscription.this : name => s.id }
}

output "subscription_names" {
  description = "Names of the subscriptions (name => name), for IAM bindings."
  value       = { for name, s in google_pubsub_subscription.this : name => s.name }
}

output "source_uris" {
  description = "The suite's source URI of each subscription (name => pubsub://projects/P/subscriptions/S)."
  value       = { for name, s in google_pubsub_subscription.this : name => "pubsub://${s.id}" }
}
