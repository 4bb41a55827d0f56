variable "project_id" {
  description = "GCP project of the instance and the secret."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "name" {
  description = "Name of the Memorystore for Redis instance."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$", var.name))
    error_message = "name must be 1-40 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the instance (the Dataflow job's region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a GCP region such as europe-west1."
  }
}

variable "authorized_network" {
  description = "VPC network the instance is reachable from (projects/P/global/networks/N): the network of the Dataflow workers."
  type        = string

  validation {
    condition     = can(regex("^projects/[^/]+/global/networks/[^/]+$", var.authorized_network))
    error_message = "authorized_network must be projects/PROJECT/global/networks/NETWORK."
  }
}

variable "connect_mode" {
  description = "DIRECT_PEERING or PRIVATE_SERVICE_ACCESS (needs a private services range on the network)."
  type        = string
  default     = "PRIVATE_SERVICE_ACCESS"

  validation {
    condition     = contains(["DIRECT_PEERING", "PRIVATE_SERVICE_ACCESS"], var.connect_mode)
    error_message = "connect_mode must be DIRECT_PEERING or PRIVATE_SERVICE_ACCESS."
  }
}

variable "tier" {
  description = "BASIC (no replica) or STANDARD_HA (replica with automatic failover)."
  type        = string
  default     = "STANDARD_HA"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.tier)
    error_message = "tier must be BASIC or STANDARD_HA."
  }
}

variable "memory_size_gb" {
  description = "Memory of the instance in GiB (1-300)."
  type        = number
  default     = 1

  validation {
    condition     = var.memory_size_gb >= 1 && var.memory_size_gb <= 300 && floor(var.memory_size_gb) == var.memory_size_gb
    error_message = "memory_size_gb must be a whole number from 1 to 300."
  }
}

variable "redis_version" {
  description = "Redis version, e.g. REDIS_7_2."
  type        = string
  default     = "REDIS_7_2"

  validation {
    condition     = can(regex("^REDIS_[0-9]+(_[0-9]+)?$", var.redis_version))
    error_message = "redis_version must look like REDIS_7_2."
  }
}

variable "auth_enabled" {
  description = "Require the AUTH string. On by default; the string is stored in Secret Manager, never in a variable."
  type        = bool
  default     = true
}

variable "transit_encryption_mode" {
  description = "SERVER_AUTHENTICATION (TLS, the default: clients use rediss:// and trust server_ca_certs) or DISABLED."
  type        = string
  default     = "SERVER_AUTHENTICATION"

  validation {
    condition     = contains(["SERVER_AUTHENTICATION", "DISABLED"], var.transit_encryption_mode)
    error_message = "transit_encryption_mode must be SERVER_AUTHENTICATION or DISABLED."
  }
}

variable "customer_managed_key" {
  description = "Cloud KMS key encrypting the instance's data at rest, or null for Google-managed encryption."
  type        = string
  default     = null

  validation {
    condition     = var.customer_managed_key == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.customer_managed_key))
    error_message = "customer_managed_key must be projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY, or null."
  }
}

variable "auth_secret_id" {
  description = "ID of the Secret Manager secret that receives the AUTH string."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.auth_secret_id))
    error_message = "auth_secret_id must be 1-255 letters, digits, hyphens or underscores."
  }
}

variable "labels" {
  description = "Labels on the instance and the secret."
  type        = map(string)
  default     = {}
}
