output "email" {
  description = "Email of the worker service account: the Flex Template job's service_account_email."
  value       = google_service_account.worker.email
}

output "member" {
  description = "IAM member string of the account (serviceAccount:EMAIL), for extra grants."
  value       = local.member
}

output "unique_id" {
  description = "Numeric unique id of the account: the audience an AWS role trusts for web-identity federation (see the aws_kinesis module)."
  value       = google_service_account.worker.unique_id
}

output "grants_done" {
  description = "Depend on this before launching the job, so the workers start with their permissions."
  value = concat(
    [google_project_iam_member.dataflow_worker.id, google_storage_bucket_iam_member.object_admin.id, google_artifact_registry_repository_iam_member.reader.id],
    [for m in google_pubsub_subscription_iam_member.subscriber : m.id],
    [for m in google_pubsub_subscription_iam_member.viewer : m.id],
    [for m in google_pubsub_topic_iam_member.publisher : m.id],
    [for m in google_bigquery_dataset_iam_member.data_editor : m.id],
    [for m in google_secret_manager_secret_iam_member.accessor : m.id],
    [for m in google_project_iam_member.bigquery_job_user : m.id],
  )
}
