variable "pipeline" {
  description = "Catalog name of the pipeline whose Flex Template job is wired (a key of pipeline_options.json), or null to use only the table outputs."
  type        = string
  default     = null

  validation {
    condition     = var.pipeline == null || contains(keys(local.catalog), coalesce(var.pipeline, "-"))
    error_message = "pipeline must be one of the catalog's pipelines: ${join(", ", sort(keys(local.catalog)))}."
  }
}

variable "option_values" {
  description = "Values of the pipeline's options (name => text), e.g. { source = \"pubsub://...\" }. Every required option must be set (sink may come from redis_sink); options left out get their declared default, and `pipeline` (the template selector) the pipeline's name. Never put a secret here: name it by reference (password_secret=projects/P/secrets/S)."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setsubtract(keys(var.option_values), [
      for option in try(local.catalog[var.pipeline].parameters, []) : option.name
    ])) == 0
    error_message = "option_values names options the pipeline does not declare: ${join(", ", sort(tolist(setsubtract(keys(var.option_values), [for option in try(local.catalog[var.pipeline].parameters, []) : option.name]))))}. See terraform/modules/wiring/pipeline_options.json."
  }
}

variable "tables" {
  description = "BigQuery tables to shape (key => spec): schema_json is a schema file's text (a BigQuery field list or {\"fields\": [...]}); partition_field a top-level TIMESTAMP, DATE or DATETIME field (partitioned by day on it); clustering up to four top-level fields."
  type = map(object({
    schema_json               = string
    description               = string
    partition_field           = string
    clustering                = optional(list(string), [])
    partition_expiration_days = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for spec in var.tables : can(try(jsondecode(spec.schema_json).fields[0].name, jsondecode(spec.schema_json)[0].name))])
    error_message = "every schema_json must be a non-empty BigQuery field list, or an object with a non-empty \"fields\" list."
  }
  validation {
    condition     = alltrue([for spec in var.tables : length(spec.clustering) <= 4])
    error_message = "BigQuery clusters a table by at most four fields."
  }
  validation {
    condition     = alltrue([for spec in var.tables : spec.partition_expiration_days == null || try(spec.partition_expiration_days >= 1, false)])
    error_message = "partition_expiration_days must be at least 1 (or null: partitions never expire)."
  }
}

variable "cdc" {
  description = "CDC tables of the bigquery-replica:// sink (transforms/io/bigquery/replica.py), or null: the source tables replicated (e.g. inventory.customers), the staging and replica schema files' text (terraform/schemas/cdc_*.json) and the staging suffix. Each source table gets a replica table named like it with every character but letters, digits and _ replaced by _, and a staging table of that name plus the suffix."
  type = object({
    source_tables       = list(string)
    staging_schema_json = string
    replica_schema_json = string
    staging_suffix      = optional(string, "_changelog")
    staging_expiration  = optional(number, 30)
  })
  default = null

  validation {
    condition     = var.cdc == null || try(length(var.cdc.source_tables) >= 1 && alltrue([for t in var.cdc.source_tables : can(regex("^[^,&#\\s]+$", t))]), false)
    error_message = "cdc.source_tables must list at least one table, each without commas, &, # or whitespace."
  }
  validation {
    condition     = var.cdc == null || try(can(regex("^[A-Za-z0-9_]+$", var.cdc.staging_suffix)), false)
    error_message = "cdc.staging_suffix must be letters, digits and underscores."
  }
  validation {
    condition     = var.cdc == null || try(contains([for f in jsondecode(var.cdc.staging_schema_json) : f.name], "ingest_time") && contains([for f in jsondecode(var.cdc.replica_schema_json) : f.name], "_merged_at"), false)
    error_message = "cdc schemas must be the sink's: staging with ingest_time, replica with _merged_at (terraform/schemas/cdc_staging.json, cdc_replica.json)."
  }
}

variable "redis_sink" {
  description = "Where a Redis sink writes, or null. When set, the `sink` option defaults to its URI (see the redis_uri output): host and port of the instance, tls (rediss://), the Secret Manager secret holding the AUTH string (projects/P/secrets/S, read by the workers, never put in the URI), and the sink parameters (mode, key, ttl...; see transforms/io/redis/sink.py)."
  type = object({
    host        = string
    port        = number
    tls         = bool
    db          = optional(number, 0)
    auth_secret = optional(string)
    sink_params = map(string)
  })
  default = null

  validation {
    condition     = var.redis_sink == null || try(var.redis_sink.auth_secret == null || can(regex("^projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?$", var.redis_sink.auth_secret)), false)
    error_message = "redis_sink.auth_secret must be a Secret Manager name: projects/PROJECT/secrets/SECRET[/versions/VERSION]."
  }
  validation {
    condition     = var.redis_sink == null || try(contains(keys(var.redis_sink.sink_params), "key"), false)
    error_message = "redis_sink.sink_params needs key=<template>, the key each record is written to."
  }
  validation {
    condition     = var.redis_sink == null || try(length(setintersection(keys(var.redis_sink.sink_params), ["password_env", "password_secret"])) == 0, false)
    error_message = "do not give a password in redis_sink.sink_params: set redis_sink.auth_secret (the secret's name) instead."
  }
  validation {
    condition     = var.redis_sink == null || try(alltrue([for value in values(var.redis_sink.sink_params) : !can(regex("[&#\\s]", value))]), false)
    error_message = "redis_sink.sink_params values must not contain &, # or whitespace (they go into a URI query)."
  }
}
