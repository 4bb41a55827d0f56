variable "name" {
  description = "Name of the Kinesis data stream (and prefix of the key alias, role and policy)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.-]{1,100}$", var.name))
    error_message = "name must be 1-100 letters, digits, underscores, hyphens or dots."
  }
}

variable "stream_mode" {
  description = "ON_DEMAND (capacity follows traffic) or PROVISIONED (a fixed shard_count)."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.stream_mode)
    error_message = "stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "shard_count" {
  description = "Shards of a PROVISIONED stream (1 MB/s or 1000 records/s in each); must be null for ON_DEMAND."
  type        = number
  default     = null

  validation {
    condition     = var.stream_mode == "PROVISIONED" ? try(var.shard_count >= 1 && floor(var.shard_count) == var.shard_count, false) : var.shard_count == null
    error_message = "give a whole shard_count >= 1 with stream_mode = PROVISIONED, and none with ON_DEMAND."
  }
}

variable "retention_hours" {
  description = "How long records stay readable, in hours (24 to 8760); more than 24 costs extra, and lets a job restart from further back."
  type        = number
  default     = 168

  validation {
    condition     = var.retention_hours >= 24 && var.retention_hours <= 8760 && floor(var.retention_hours) == var.retention_hours
    error_message = "retention_hours must be a whole number from 24 to 8760."
  }
}

variable "kms_key_arn" {
  description = "ARN of an existing KMS key encrypting the stream, or null to create a dedicated key with rotation on."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[a-f0-9-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), or null."
  }
}

variable "reader_gcp_service_account_ids" {
  description = "Numeric unique ids of the GCP service accounts (the Dataflow workers) allowed to assume the reader role with their Google identity token (web identity federation, no long-lived AWS keys). Empty: no role is created."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.reader_gcp_service_account_ids : can(regex("^[0-9]{21}$", id))])
    error_message = "reader_gcp_service_account_ids must be 21-digit service account unique ids (google_service_account.unique_id), not emails."
  }
}

variable "reader_group_name" {
  description = "Name of an IAM group to create with the read policy, for readers that use access keys (issue keys outside Terraform and keep them in a secret manager). Null: no group."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires or clears (SNS topics, usually); empty: the alarms only change state."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.alarm_actions : can(regex("^arn:aws[a-z-]*:", arn))])
    error_message = "alarm_actions must be ARNs (arn:aws:sns:REGION:ACCOUNT:TOPIC)."
  }
}

variable "alarm_thresholds" {
  description = "When the stream's alarms fire: the readers' iterator age in seconds, throttled requests per minute, and for how many minutes in a row."
  type = object({
    iterator_age_seconds = optional(number, 300)
    throttled_requests   = optional(number, 0)
    evaluation_minutes   = optional(number, 5)
  })
  default = {}

  validation {
    condition     = var.alarm_thresholds.iterator_age_seconds > 0 && var.alarm_thresholds.throttled_requests >= 0 && var.alarm_thresholds.evaluation_minutes >= 1
    error_message = "iterator_age_seconds must be positive, throttled_requests 0 or more, evaluation_minutes at least 1."
  }
}
