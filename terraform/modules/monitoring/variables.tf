variable "project_id" {
  description = "GCP project of the job, where the dashboard and alert policies are created."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "pipeline" {
  description = "Catalog name of the pipeline the job runs, e.g. events_to_bigquery (a key of pipelines.json)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]*$", var.pipeline))
    error_message = "pipeline must be a catalog pipeline name such as events_to_bigquery."
  }
}

variable "job_name" {
  description = "Name of the Dataflow job (the dataflow_job resource's job_name label)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,62}[a-z0-9])?$", var.job_name))
    error_message = "job_name must be 1-64 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "subscription_id" {
  description = "Name (not path) of the job's input Pub/Sub subscription, or null for a job that reads no subscription (no backlog tiles' data, no backlog alert)."
  type        = string
  default     = null

  validation {
    condition     = var.subscription_id == null || can(regex("^[a-zA-Z][-a-zA-Z0-9_.~+%]{2,254}$", var.subscription_id))
    error_message = "subscription_id must be a subscription name (not a projects/... path)."
  }
}

variable "notification_channels" {
  description = "Notification channel ids (projects/P/notificationChannels/N) every alert notifies; empty: the alerts open incidents without notifying."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for channel in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", channel))])
    error_message = "notification_channels must be ids such as projects/P/notificationChannels/123."
  }
}

variable "thresholds" {
  description = "When each alert fires: dead letters per second (5 min rate), records unaccounted over 30 min (the balance), system lag, data watermark age and oldest unacked message age in seconds."
  type = object({
    dead_letters_per_second            = optional(number, 1)
    unaccounted_records                = optional(number, 100)
    system_lag_seconds                 = optional(number, 300)
    data_watermark_age_seconds         = optional(number, 600)
    oldest_unacked_message_age_seconds = optional(number, 900)
  })
  default = {}

  validation {
    condition     = alltrue([for value in values(var.thresholds) : value >= 0])
    error_message = "every threshold must be 0 or more."
  }
}

variable "alert_duration_seconds" {
  description = "How long a condition must hold before its alert fires."
  type        = number
  default     = 300

  validation {
    condition     = var.alert_duration_seconds >= 0 && var.alert_duration_seconds <= 86400 && floor(var.alert_duration_seconds) == var.alert_duration_seconds
    error_message = "alert_duration_seconds must be a whole number of seconds between 0 and 86400."
  }
}

variable "labels" {
  description = "User labels of the alert policies."
  type        = map(string)
  default     = {}
}
