# The Dataflow worker service account, with least privilege: roles/dataflow.worker on the
# project (required, it cannot be scoped lower) and every other role on the one resource it
# needs. No keys are created: Dataflow runs the workers as this account.

resource "google_service_account" "worker" {
  project      = var.project_id
  account_id   = var.account_id
  display_name = "Dataflow worker: ${var.pipeline}"
  description  = "Runs the ${var.pipeline} Dataflow job (launcher and workers). Managed by Terraform."
}

locals {
  member = "serviceAccount:${google_service_account.worker.email}"
}

resource "google_project_iam_member" "dataflow_worker" {
  project = var.project_id
  role    = "roles/dataflow.worker"
  member  = local.member
}

resource "google_project_iam_member" "bigquery_job_user" {
  count = var.bigquery_job_user ? 1 : 0

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = local.member
}

resource "google_pubsub_subscription_iam_member" "subscriber" {
  for_each = var.subscriptions

  project      = var.project_id
  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = local.member
}

# Dataflow reads the subscription's metadata (subscriptions.get) to track its backlog.
resource "google_pubsub_subscription_iam_member" "viewer" {
  for_each = var.subscriptions

  project      = var.project_id
  subscription = each.value
  role         = "roles/pubsub.viewer"
  member       = local.member
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = var.publish_topics

  project = var.project_id
  topic   = each.value
  role    = "roles/pubsub.publisher"
  member  = local.member
}

resource "google_bigquery_dataset_iam_member" "data_editor" {
  for_each = var.bigquery_datasets

  project    = var.project_id
  dataset_id = each.value
  role       = "roles/bigquery.dataEditor"
  member     = local.member
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = var.secret_ids

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = local.member
}

resource "google_storage_bucket_iam_member" "object_admin" {
  bucket = var.bucket
  role   = "roles/storage.objectAdmin"
  member = local.member
}

resource "google_artifact_registry_repository_iam_member" "reader" {
  project    = var.project_id
  location   = var.artifact_repository.location
  repository = var.artifact_repository.name
  role       = "roles/artifactregistry.reader"
  member     = local.member
}
