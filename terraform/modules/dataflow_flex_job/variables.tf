variable "project_id" {
  description = "GCP project where the job runs."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "name" {
  description = "Job name (lowercase letters, digits, hyphens; unique among running jobs of the region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,62}[a-z0-9])?$", var.name))
    error_message = "name must be 1-64 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Dataflow region (regional endpoint) of the job, e.g. europe-west1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a GCP region such as europe-west1."
  }
}

variable "container_spec_gcs_path" {
  description = "gs:// path of the Flex Template spec file (written by gcloud dataflow flex-template build)."
  type        = string

  validation {
    condition     = can(regex("^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]/.+\\.json$", var.container_spec_gcs_path))
    error_message = "container_spec_gcs_path must be a gs://BUCKET/PATH.json spec file."
  }
}

variable "template_parameter_names" {
  description = "The template's parameter names (the wiring module's parameter_names output): the job's parameter keys must equal them."
  type        = list(string)

  validation {
    condition     = length(var.template_parameter_names) > 0
    error_message = "template_parameter_names must list the template's parameters."
  }
}

variable "parameters" {
  description = "The job's parameters (the wiring module's parameters output): one per template parameter, as text. Name secrets by reference, never by value."
  type        = map(string)

  validation {
    condition     = alltrue([for value in values(var.parameters) : value != null])
    error_message = "parameter values must not be null: give the default as text instead."
  }
}

variable "service_account_email" {
  description = "Worker service account (the dataflow_worker module's email): the launcher and workers run as it."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\\.iam\\.gserviceaccount\\.com$", var.service_account_email))
    error_message = "service_account_email must be a service account email (NAME@PROJECT.iam.gserviceaccount.com)."
  }
}

variable "temp_location" {
  description = "gs:// folder for temporary files."
  type        = string

  validation {
    condition     = startswith(var.temp_location, "gs://")
    error_message = "temp_location must be a gs:// path."
  }
}

variable "staging_location" {
  description = "gs:// folder for staged files."
  type        = string

  validation {
    condition     = startswith(var.staging_location, "gs://")
    error_message = "staging_location must be a gs:// path."
  }
}

variable "sdk_container_image" {
  description = "Worker image (the same image as the launcher, so workers need no pip at start-up), REGION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG or @sha256:..., or null to use the template's."
  type        = string
  default     = null
}

variable "network" {
  description = "VPC network of the workers (short name or self link), or null for \"default\"."
  type        = string
  default     = null
}

variable "subnetwork" {
  description = "Subnetwork of the workers: regions/REGION/subnetworks/NAME or a full URL; needed with a Shared VPC or a custom-mode network."
  type        = string
  default     = null

  validation {
    condition     = var.subnetwork == null || can(regex("(^|/)regions/[a-z]+-[a-z]+[0-9]/subnetworks/[a-z]([-a-z0-9]*[a-z0-9])?$", var.subnetwork))
    error_message = "subnetwork must be regions/REGION/subnetworks/NAME or https://www.googleapis.com/compute/v1/projects/P/regions/REGION/subnetworks/NAME."
  }
}

variable "private_ips" {
  description = "Workers get private IPs only (the subnetwork needs Private Google Access, and Cloud NAT for anything outside Google)."
  type        = bool
  default     = true
}

variable "max_workers" {
  description = "Upper bound of autoscaling."
  type        = number
  default     = 5

  validation {
    condition     = var.max_workers >= 1 && var.max_workers <= 1000 && floor(var.max_workers) == var.max_workers
    error_message = "max_workers must be a whole number from 1 to 1000."
  }
}

variable "num_workers" {
  description = "Workers at start, or null for Dataflow's choice."
  type        = number
  default     = null

  validation {
    condition     = var.num_workers == null || try(var.num_workers >= 1 && var.num_workers <= var.max_workers, false)
    error_message = "num_workers must be between 1 and max_workers."
  }
}

variable "machine_type" {
  description = "Worker machine type, or null for Dataflow's default."
  type        = string
  default     = null
}

variable "enable_streaming_engine" {
  description = "Run the streaming shuffle and state in the Streaming Engine service (recommended: smaller workers, faster autoscaling)."
  type        = bool
  default     = true
}

variable "kms_key_name" {
  description = "Cloud KMS key encrypting the job's state and temp data, or null for Google-managed encryption. The Dataflow and Compute Engine service agents need roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY, or null."
  }
}

variable "on_delete" {
  description = "What terraform destroy (or a replacement) does to the running job: drain (finish in-flight data; right for streaming) or cancel."
  type        = string
  default     = "drain"

  validation {
    condition     = contains(["drain", "cancel"], var.on_delete)
    error_message = "on_delete must be drain or cancel."
  }
}

variable "transform_name_mapping" {
  description = "Used when an apply updates the running job in place: old step name => new name, each mapping a step and the steps inside it (Dataflow maps name prefixes), as python -m pipelines update-check compare asks; an empty new name removes a step that holds no state. Empty: the step names did not change."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for old in keys(var.transform_name_mapping) : trimspace(old) != ""])
    error_message = "transform_name_mapping keys must be step names of the running job, not empty."
  }
}

variable "skip_wait_on_job_termination" {
  description = "When the job is replaced or destroyed, stop waiting once it is draining or cancelling instead of drained or cancelled. Only with a name that changes with each replacement (e.g. a release suffix): the new job cannot start under a name still in use."
  type        = bool
  default     = false
}

variable "launcher_machine_type" {
  description = "Machine type of the Flex Template launcher VM, or null for Dataflow's default (n1-standard-1)."
  type        = string
  default     = null
}

variable "autoscaling_algorithm" {
  description = "THROUGHPUT_BASED (autoscale between 1 and max_workers) or NONE (keep num_workers), or null for Dataflow's default (THROUGHPUT_BASED for streaming with Streaming Engine)."
  type        = string
  default     = null

  validation {
    condition     = var.autoscaling_algorithm == null || contains(["THROUGHPUT_BASED", "NONE"], coalesce(var.autoscaling_algorithm, "NONE"))
    error_message = "autoscaling_algorithm must be THROUGHPUT_BASED, NONE or null."
  }
}

variable "additional_experiments" {
  description = "Extra Dataflow experiments (e.g. enable_recommendations)."
  type        = list(string)
  default     = []
}

variable "labels" {
  description = "Labels on the job."
  type        = map(string)
  default     = {}
}
