output "input_topics" {
  description = "Topics to publish to: events (events_to_bigquery, metrics_to_redis) and cdc (cdc_replicate)."
  value       = { for kind, pubsub in module.pubsub : kind => pubsub.topic_id }
}

output "undeliverable_hold_subscriptions" {
  description = "Subscriptions keeping messages Pub/Sub could not deliver, per topic."
  value       = { for kind, pubsub in module.pubsub : kind => pubsub.dead_letter_hold_subscription_id }
}

output "template_bucket" {
  description = "Where `gcloud dataflow flex-template build` writes the specs: gs://BUCKET/templates/<pipeline>.json."
  value       = module.bucket.template_prefix
}

output "image" {
  description = "Image to build and push (launcher and worker): REGION-docker.pkg.dev/PROJECT/REPO/beam-streaming-suite."
  value       = "${module.images.image_prefix}/beam-streaming-suite"
}

output "tables" {
  description = "The BigQuery tables as PROJECT:DATASET.TABLE."
  value       = module.bigquery.table_specs
}

output "worker_service_accounts" {
  description = "Worker service account email of each pipeline."
  value       = { for pipeline, worker in module.worker : pipeline => worker.email }
}

output "job_parameters" {
  description = "The parameters each job is (or would be) launched with: the same keys as the template's parameters (templates/<pipeline>/metadata.json)."
  value       = { for pipeline, wiring in module.wiring : pipeline => wiring.parameters }
}

output "launch" {
  description = "What a manual launch (gcloud dataflow flex-template run) needs per pipeline."
  value = {
    for pipeline in local.pipelines : pipeline => {
      region                = var.region
      template_file_gcs     = "${module.bucket.template_prefix}/${pipeline}.json"
      service_account_email = module.worker[pipeline].email
      temp_location         = module.bucket.temp_location
      staging_location      = module.bucket.staging_location
      subnetwork            = var.subnetwork
      parameters            = module.wiring[pipeline].parameters
    }
  }
}

output "redis_auth_secret" {
  description = "Secret Manager secret with the Redis AUTH string, or null."
  value       = var.deploy_metrics_to_redis ? module.redis["metrics"].auth_secret_id : null
}

output "redis_server_ca_certs" {
  description = "CA certificates to trust for Redis TLS (put them in the worker image), or an empty list."
  value       = var.deploy_metrics_to_redis ? module.redis["metrics"].server_ca_certs : []
}

output "job_ids" {
  description = "IDs of the running jobs (empty until deploy_jobs = true)."
  value       = { for pipeline, job in module.job : pipeline => job.job_id }
}

output "monitoring" {
  description = "Per deployed job: its dashboard and the id of each alert policy."
  value = {
    for pipeline, monitoring in module.monitoring : pipeline => {
      dashboard = monitoring.dashboard_id
      alerts    = monitoring.alert_policy_ids
    }
  }
}
