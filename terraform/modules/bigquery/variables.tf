variable "project_id" {
  description = "GCP project of the dataset."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "dataset_id" {
  description = "ID of the dataset holding the pipeline's tables (letters, digits, underscores)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_]+$", var.dataset_id)) && length(var.dataset_id) <= 1024
    error_message = "dataset_id must be letters, digits and underscores only."
  }
}

variable "location" {
  description = "Location of the dataset: a region (europe-west1) or a multi-region (EU, US). Keep it with the Dataflow region."
  type        = string

  validation {
    condition     = can(regex("^(EU|US|[a-z]+-[a-z]+[0-9])$", var.location))
    error_message = "location must be EU, US or a region such as europe-west1."
  }
}

variable "description" {
  description = "Description of the dataset."
  type        = string
  default     = "Tables of the beam-streaming-suite pipelines."
}

variable "tables" {
  description = "Tables (table_id => spec), as the wiring module's `tables` output gives them: schema (JSON field list), description, partition_field (partitioned by day on it), clustering (up to 4 fields), partition_expiration_days (null: never)."
  type = map(object({
    schema                    = string
    description               = string
    partition_field           = string
    clustering                = list(string)
    partition_expiration_days = optional(number)
  }))

  validation {
    condition     = alltrue([for id, t in var.tables : can(regex("^[A-Za-z0-9_]+$", id)) && length(id) <= 1024])
    error_message = "table ids must be letters, digits and underscores only."
  }
  validation {
    condition     = alltrue([for t in var.tables : can(jsondecode(t.schema)[0].name)])
    error_message = "every table schema must be a JSON list of BigQuery fields."
  }
  validation {
    condition     = alltrue([for t in var.tables : t.partition_field != "" && length(t.clustering) <= 4])
    error_message = "every table needs a partition_field, and at most four clustering fields."
  }
}

variable "deletion_protection" {
  description = "Refuse to destroy tables (and their data) through Terraform. Turn off only to tear down a test stack."
  type        = bool
  default     = true
}

variable "kms_key_name" {
  description = "Cloud KMS key encrypting the dataset's tables by default, or null for Google-managed encryption. The BigQuery service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY, or null."
  }
}

variable "labels" {
  description = "Labels on the dataset and tables."
  type        = map(string)
  default     = {}
}
