variable "project_id" {
  description = "GCP project that holds the stack (6-30 characters, lowercase letters, digits and hyphens)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "prefix" {
  description = "Short name of the deployment, put in front of every resource name (e.g. \"acme\")."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.prefix))
    error_message = "prefix must be 2-10 lowercase letters or digits, starting with a letter (it is part of names with tight length limits)."
  }
}

variable "environment" {
  description = "Deployment environment: dev, test, staging or prod."
  type        = string

  validation {
    condition     = contains(["dev", "test", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, test, staging, prod."
  }
}

variable "pipeline" {
  description = "Catalog name of the pipeline (pipelines/catalog/__init__.py), snake_case, e.g. events_to_bigquery."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{1,39}$", var.pipeline))
    error_message = "pipeline must be a snake_case catalog name of at most 40 characters, e.g. events_to_bigquery."
  }
}

variable "labels" {
  description = "Extra labels merged over the standard ones (app, environment, pipeline, managed-by)."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for key, value in var.labels :
      can(regex("^[a-z][a-z0-9_-]{0,62}$", key)) && can(regex("^[a-z0-9_-]{0,63}$", value))
    ])
    error_message = "label keys must match ^[a-z][a-z0-9_-]{0,62}$ and values ^[a-z0-9_-]{0,63}$ (lowercase, as GCP requires)."
  }
}
