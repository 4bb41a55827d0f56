variable "region" {
  description = "AWS region of the stream, e.g. eu-west-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as eu-west-1."
  }
}

variable "stream_name" {
  description = "Name of the Kinesis data stream the pipeline reads."
  type        = string
  default     = "beam-streaming-suite-events"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.-]{1,100}$", var.stream_name))
    error_message = "stream_name must be 1-100 letters, digits, underscores, hyphens or dots."
  }
}

variable "stream_mode" {
  description = "ON_DEMAND or PROVISIONED."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.stream_mode)
    error_message = "stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "shard_count" {
  description = "Shards with stream_mode = PROVISIONED; null with ON_DEMAND."
  type        = number
  default     = null
}

variable "retention_hours" {
  description = "Hours records stay readable (24-8760)."
  type        = number
  default     = 168

  validation {
    condition     = var.retention_hours >= 24 && var.retention_hours <= 8760
    error_message = "retention_hours must be between 24 and 8760."
  }
}

variable "dataflow_worker_unique_ids" {
  description = "Unique ids (21 digits) of the GCP Dataflow worker service accounts allowed to read, from the GCP example's worker accounts (google_service_account.unique_id)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.dataflow_worker_unique_ids : can(regex("^[0-9]{21}$", id))])
    error_message = "dataflow_worker_unique_ids must be 21-digit service account unique ids."
  }
}

variable "alarm_actions" {
  description = "ARNs (SNS topics) the stream's alarms notify: iterator age, throttled reads and writes."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.alarm_actions : can(regex("^arn:aws[a-z-]*:", arn))])
    error_message = "alarm_actions must be ARNs (arn:aws:sns:REGION:ACCOUNT:TOPIC)."
  }
}
