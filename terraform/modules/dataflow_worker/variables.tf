variable "project_id" {
  description = "GCP project where the Dataflow job runs."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "account_id" {
  description = "ID of the worker service account (6-30 lowercase letters, digits, hyphens); the naming module gives one."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.account_id))
    error_message = "account_id must be 6-30 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "pipeline" {
  description = "Catalog name of the pipeline the account runs (used in its description)."
  type        = string
}

variable "subscriptions" {
  description = "Subscriptions the job reads (short names): the account gets roles/pubsub.subscriber and roles/pubsub.viewer on each, nothing project-wide."
  type        = set(string)
  default     = []
}

variable "publish_topics" {
  description = "Topics the job writes to (short names): roles/pubsub.publisher on each."
  type        = set(string)
  default     = []
}

variable "bigquery_datasets" {
  description = "Datasets the job writes to (dataset ids): roles/bigquery.dataEditor on each dataset, not on the project."
  type        = set(string)
  default     = []
}

variable "bigquery_job_user" {
  description = "Also grant roles/bigquery.jobUser on the project (needed only to run queries, e.g. CDC MERGE from the job; streaming inserts do not need it)."
  type        = bool
  default     = false
}

variable "secret_ids" {
  description = "Secret Manager secrets the job reads (projects/P/secrets/S): roles/secretmanager.secretAccessor on each."
  type        = set(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.secret_ids : can(regex("^projects/[^/]+/secrets/[^/]+$", s))])
    error_message = "secret_ids must be secret names projects/PROJECT/secrets/SECRET (without /versions)."
  }
}

variable "bucket" {
  description = "Bucket of templates, staging and temp files: roles/storage.objectAdmin on it (Dataflow writes and deletes temp files)."
  type        = string
}

variable "artifact_repository" {
  description = "Artifact Registry repository of the pipeline image (location and short name): roles/artifactregistry.reader on it, so workers pull the SDK image."
  type = object({
    location = string
    name     = string
  })
}
