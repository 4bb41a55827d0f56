variable "project_id" {
  description = "GCP project of the bucket."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "name" {
  description = "Globally unique bucket name (3-63 lowercase letters, digits, hyphens, underscores, dots)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.name)) && !startswith(var.name, "goog")
    error_message = "name must be 3-63 lowercase letters, digits, - _ ., start and end with a letter or digit, and not start with goog."
  }
}

variable "location" {
  description = "Bucket location: the Dataflow region (e.g. europe-west1), so temp files stay next to the workers."
  type        = string

  validation {
    condition     = can(regex("^(EU|US|ASIA|[a-z]+-[a-z]+[0-9])$", var.location))
    error_message = "location must be a region such as europe-west1, or EU, US, ASIA."
  }
}

variable "temp_object_age_days" {
  description = "Objects under temp/ and staging/ are deleted after this many days."
  type        = number
  default     = 7

  validation {
    condition     = var.temp_object_age_days >= 1
    error_message = "temp_object_age_days must be at least 1."
  }
}

variable "noncurrent_version_age_days" {
  description = "Noncurrent (overwritten or deleted) object versions are deleted after this many days."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_age_days >= 1
    error_message = "noncurrent_version_age_days must be at least 1."
  }
}

variable "kms_key_name" {
  description = "Cloud KMS key encrypting new objects by default, or null for Google-managed encryption. The Cloud Storage service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY, or null."
  }
}

variable "access_log_bucket" {
  description = "Bucket receiving this bucket's usage logs, or null (Cloud Audit Logs still record admin and, if enabled, data access)."
  type        = string
  default     = null
}

variable "labels" {
  description = "Labels on the bucket."
  type        = map(string)
  default     = {}
}
