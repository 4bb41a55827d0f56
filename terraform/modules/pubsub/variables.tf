variable "project_id" {
  description = "GCP project of the topics and subscriptions."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "topic_name" {
  description = "Name of the topic the pipeline reads."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9._~%+-]{2,254}$", var.topic_name)) && !startswith(lower(var.topic_name), "goog")
    error_message = "topic_name must be 3-255 characters, start with a letter, use letters, digits and . _ ~ % + -, and not start with goog."
  }
}

variable "dead_letter_topic_name" {
  description = "Name of the topic that receives messages not acknowledged after max_delivery_attempts (Pub/Sub's dead letter)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9._~%+-]{2,254}$", var.dead_letter_topic_name)) && !startswith(lower(var.dead_letter_topic_name), "goog")
    error_message = "dead_letter_topic_name must be a valid topic name (3-255 characters, starting with a letter)."
  }
}

variable "dead_letter_hold_subscription_name" {
  description = "Name of the subscription that keeps dead-lettered messages for inspection and replay (a topic without subscriptions drops what it receives)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9._~%+-]{2,254}$", var.dead_letter_hold_subscription_name))
    error_message = "dead_letter_hold_subscription_name must be 3-255 characters, starting with a letter."
  }
}

variable "subscriptions" {
  description = "Subscriptions on the topic (name => settings), each with a dead-letter policy to the dead-letter topic. message_ordering only where the pipeline needs per-key order (it slows delivery); exactly_once_delivery is off by default because Dataflow de-duplicates by itself."
  type = map(object({
    ack_deadline_seconds       = optional(number, 60)
    message_retention_duration = optional(string, "604800s")
    max_delivery_attempts      = optional(number, 10)
    minimum_backoff            = optional(string, "10s")
    maximum_backoff            = optional(string, "600s")
    message_ordering           = optional(bool, false)
    exactly_once_delivery      = optional(bool, false)
    filter                     = optional(string)
  }))

  validation {
    condition     = length(var.subscriptions) >= 1
    error_message = "give at least one subscription: the pipeline reads one."
  }
  validation {
    condition     = alltrue([for s in var.subscriptions : s.max_delivery_attempts >= 5 && s.max_delivery_attempts <= 100])
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
  validation {
    condition     = alltrue([for s in var.subscriptions : s.ack_deadline_seconds >= 10 && s.ack_deadline_seconds <= 600])
    error_message = "ack_deadline_seconds must be between 10 and 600."
  }
  validation {
    condition = alltrue([
      for s in var.subscriptions :
      can(regex("^[0-9]+s$", s.message_retention_duration)) &&
      try(tonumber(trimsuffix(s.message_retention_duration, "s")) >= 600 && tonumber(trimsuffix(s.message_retention_duration, "s")) <= 604800, false)
    ])
    error_message = "a subscription's message_retention_duration must be seconds (\"604800s\") between 600s and 604800s (7 days)."
  }
  validation {
    condition     = alltrue([for s in var.subscriptions : can(regex("^[0-9]+(\\.[0-9]+)?s$", s.minimum_backoff)) && can(regex("^[0-9]+(\\.[0-9]+)?s$", s.maximum_backoff))])
    error_message = "minimum_backoff and maximum_backoff must be durations in seconds, e.g. \"10s\" and \"600s\"."
  }
}

variable "topic_message_retention_duration" {
  description = "How long the topics keep messages, acknowledged or not, for seek and replay (seconds, \"604800s\" = 7 days; 600s to 2678400s)."
  type        = string
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.topic_message_retention_duration)) && try(tonumber(trimsuffix(var.topic_message_retention_duration, "s")) >= 600 && tonumber(trimsuffix(var.topic_message_retention_duration, "s")) <= 2678400, false)
    error_message = "topic_message_retention_duration must be seconds between 600s and 2678400s (31 days), e.g. \"604800s\"."
  }
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) encrypting the topics, or null for Google-managed encryption. The Pub/Sub service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY, or null."
  }
}

variable "labels" {
  description = "Labels on the topics and subscriptions."
  type        = map(string)
  default     = {}
}
