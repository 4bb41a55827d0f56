variable "project_id" {
  description = "GCP project of the whole stack."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of every regional resource and of the Dataflow jobs, e.g. europe-west1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a GCP region such as europe-west1."
  }
}

variable "bigquery_location" {
  description = "Location of the BigQuery dataset: the region, or the multi-region (EU, US) that contains it."
  type        = string
  default     = "EU"

  validation {
    condition     = can(regex("^(EU|US|[a-z]+-[a-z]+[0-9])$", var.bigquery_location))
    error_message = "bigquery_location must be EU, US or a region."
  }
}

variable "prefix" {
  description = "Short deployment name in front of every resource name."
  type        = string
  default     = "bss"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.prefix))
    error_message = "prefix must be 2-10 lowercase letters or digits, starting with a letter."
  }
}

variable "environment" {
  description = "dev, test, staging or prod."
  type        = string
  default     = "dev"

  validation {
    condition     = contains(["dev", "test", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, test, staging, prod."
  }
}

variable "network" {
  description = "VPC network of the workers and of Redis, as projects/P/global/networks/N."
  type        = string

  validation {
    condition     = can(regex("^projects/[^/]+/global/networks/[^/]+$", var.network))
    error_message = "network must be projects/PROJECT/global/networks/NETWORK."
  }
}

variable "subnetwork" {
  description = "Subnetwork of the workers (regions/REGION/subnetworks/NAME), with Private Google Access on."
  type        = string

  validation {
    condition     = can(regex("^regions/[a-z]+-[a-z]+[0-9]/subnetworks/[a-z]([-a-z0-9]*[a-z0-9])?$", var.subnetwork))
    error_message = "subnetwork must be regions/REGION/subnetworks/NAME."
  }
}

variable "image_tag" {
  description = "Tag (or @sha256:DIGEST) of the pipeline image built from the repository's Dockerfile and pushed to the created repository."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$", var.image_tag))
    error_message = "image_tag must be a Docker tag or @sha256:DIGEST."
  }
}

variable "deploy_jobs" {
  description = "Launch the Dataflow jobs. Leave false on the first apply: the image and the template specs must be built and uploaded into the created repository and bucket first (see README)."
  type        = bool
  default     = false
}

variable "deploy_metrics_to_redis" {
  description = "Also create Redis (with its AUTH secret) and the metrics_to_redis job reading its own subscription of the same topic."
  type        = bool
  default     = true
}

variable "max_workers" {
  description = "Upper bound of autoscaling of each job."
  type        = number
  default     = 3

  validation {
    condition     = var.max_workers >= 1 && var.max_workers <= 1000
    error_message = "max_workers must be between 1 and 1000."
  }
}

variable "transform_name_mappings" {
  description = "Per pipeline, the step renames an apply that updates its running job passes to Dataflow (old name => new name), as python -m pipelines update-check compare asks. Empty: no step was renamed."
  type        = map(map(string))
  default     = {}

  validation {
    condition     = alltrue([for pipeline in keys(var.transform_name_mappings) : contains(["events_to_bigquery", "metrics_to_redis", "cdc_replicate"], pipeline)])
    error_message = "transform_name_mappings keys must be pipelines this example deploys: events_to_bigquery, metrics_to_redis, cdc_replicate."
  }
}

variable "kms_key_name" {
  description = "Cloud KMS key for every resource that takes one (topics, dataset, bucket, repository, jobs, Redis), or null for Google-managed encryption. Grant the service agents roles/cloudkms.cryptoKeyEncrypterDecrypter first."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY, or null."
  }
}

variable "deletion_protection" {
  description = "Protect the BigQuery tables from terraform destroy."
  type        = bool
  default     = true
}

variable "cdc_source_tables" {
  description = "Source tables replicated by the cdc_replicate job (e.g. [\"inventory.customers\"]): each gets a replica and a staging table, and the job reads Debezium or Datastream changes from its own topic. Empty: no CDC job, topic or tables."
  type        = list(string)
  default     = []
}

variable "cdc_format" {
  description = "Change envelopes on the CDC topic: debezium, datastream or auto."
  type        = string
  default     = "auto"

  validation {
    condition     = contains(["debezium", "datastream", "auto"], var.cdc_format)
    error_message = "cdc_format must be debezium, datastream or auto."
  }
}

variable "labels" {
  description = "Extra labels on every resource."
  type        = map(string)
  default     = {}
}

variable "notification_channels" {
  description = "Notification channel ids (projects/P/notificationChannels/N) the jobs' alerts notify."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for channel in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", channel))])
    error_message = "notification_channels must be ids such as projects/P/notificationChannels/123."
  }
}

variable "alert_thresholds" {
  description = "Alert thresholds of every job (see modules/monitoring); unset ones keep the module's defaults."
  type = object({
    dead_letters_per_second            = optional(number)
    unaccounted_records                = optional(number)
    system_lag_seconds                 = optional(number)
    data_watermark_age_seconds         = optional(number)
    oldest_unacked_message_age_seconds = optional(number)
  })
  default = {}

  validation {
    condition     = alltrue([for value in values(var.alert_thresholds) : value == null || value >= 0])
    error_message = "every threshold must be 0 or more."
  }
}
