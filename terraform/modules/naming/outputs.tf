output "names" {
  description = "Every resource name of the pipeline's stack (topics, subscription, dataset, tables, bucket, repository, Redis, secret, job, service account id)."
  value       = local.names

  precondition {
    condition     = length(local.names.bucket) <= 63
    error_message = "the bucket name \"${local.names.bucket}\" is longer than 63 characters: shorten prefix or project_id."
  }
  precondition {
    condition     = length(local.names.redis_instance) <= 40 && length(local.names.job_name) <= 63
    error_message = "the Redis instance (40) or job name (63) is too long: shorten prefix or pipeline."
  }
  precondition {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", local.names.service_account_id))
    error_message = "internal: the service account id \"${local.names.service_account_id}\" is not 6-30 valid characters."
  }
}

output "labels" {
  description = "Labels for every resource: app, environment, pipeline, managed-by, plus the extra labels."
  value       = local.labels
}

output "uris" {
  description = "The suite's endpoint URIs for the named resources (see transforms/io): the input subscription, the events and dead-letter tables (create=never: Terraform owns the tables)."
  value = {
    input_subscription = "pubsub://projects/${var.project_id}/subscriptions/${local.names.input_subscription}"
    events_table       = "bigquery://${var.project_id}:${local.names.dataset_id}.${local.names.events_table}?create=never"
    dead_letter_table  = "bigquery://${var.project_id}:${local.names.dataset_id}.${local.names.dead_letter_table}?create=never"
  }
}
