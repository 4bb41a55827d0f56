output "topic_id" { value = "projects/${var.project_id}/topics/${var.topic_name}" }
output "topic_name" { value = var.topic_name }
output "dead_letter_topic_id" { value = "projects/${var.project_id}/topics/${var.dead_letter_topic_name}" }
output "dead_letter_hold_subscription_id" { value = "projects/${var.project_id}/subscriptions/${var.dead_letter_hold_subscription_name}" }
output "subscription_ids" { value = { for name in keys(var.subscriptions) : name => "projects/${var.project_id}/subscriptions/${name}" } }
output "subscription_names" { value = { for name in keys(var.subscriptions) : name => name } }
output "source_uris" { value = { for name in keys(var.subscriptions) : name => "pubsub://projects/${var.project_id}/subscriptions/${name}" } }
output "stub_subscriptions" { value = var.subscriptions }
