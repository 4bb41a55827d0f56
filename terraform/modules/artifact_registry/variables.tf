variable "project_id" {
  description = "GCP project of the repository."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "repository_id" {
  description = "ID of the Docker repository holding the pipeline image (launcher and worker)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.repository_id))
    error_message = "repository_id must be 1-63 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "location" {
  description = "Region of the repository (the Dataflow region, so workers pull locally)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.location))
    error_message = "location must be a GCP region such as europe-west1."
  }
}

variable "immutable_tags" {
  description = "Refuse to move a tag to another image: a launched template always runs the image it was built with."
  type        = bool
  default     = true
}

variable "kms_key_name" {
  description = "Cloud KMS key encrypting the repository, or null for Google-managed encryption (cannot be changed after creation)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY, or null."
  }
}

variable "labels" {
  description = "Labels on the repository."
  type        = map(string)
  default     = {}
}
