output "parameters" {
  description = "The Flex Template job's parameters: one entry per option the pipeline declares (keys equal the template's parameter names), the given value or the declared default ({} when pipeline is null)."
  value       = local.parameters

  precondition {
    condition     = alltrue([for option in local.options : !option.required || trimspace(local.parameters[option.name]) != ""])
    error_message = "option_values lacks required options of ${coalesce(var.pipeline, "the pipeline")}: ${join(", ", [for option in local.options : option.name if option.required && trimspace(local.parameters[option.name]) == ""])}."
  }
  precondition {
    condition     = toset(keys(local.parameters)) == toset([for option in local.options : option.name])
    error_message = "internal: the parameter keys differ from the pipeline's options."
  }
}

output "parameter_names" {
  description = "The template's parameter names in order: pipeline (the selector), then the pipeline's options."
  value       = [for option in local.options : option.name]
}

output "tables" {
  description = "Table specs for the bigquery module: schema as a JSON field list, day partitioning on partition_field, clustering, partition expiration. Includes the CDC replica and staging tables."
  value       = merge(local.tables, local.cdc_tables)

  precondition {
    condition = alltrue([
      for key, spec in var.tables :
      contains([for field in local.table_fields[key] : field.name if contains(local.time_types, upper(field.type)) && upper(try(field.mode, "NULLABLE")) != "REPEATED"], spec.partition_field)
    ])
    error_message = "every table's partition_field must be a top-level TIMESTAMP, DATE or DATETIME field of its schema; not so in: ${join(", ", [for key, spec in var.tables : key if !contains([for field in local.table_fields[key] : field.name if contains(local.time_types, upper(field.type))], spec.partition_field)])}."
  }
  precondition {
    condition = alltrue([
      for key, spec in var.tables :
      length(setsubtract(spec.clustering, [for field in local.table_fields[key] : field.name if upper(try(field.mode, "NULLABLE")) != "REPEATED" && !contains(["RECORD", "STRUCT", "JSON"], upper(field.type))])) == 0
    ])
    error_message = "clustering fields must be top-level, non-repeated, non-RECORD, non-JSON fields of the table's schema."
  }
}

output "redis_uri" {
  description = "The suite's Redis sink URI (rediss:// with TLS), with the password named by reference (password_secret=...), or null when redis_sink is null."
  value       = local.redis_uri
}

output "cdc_tables" {
  description = "Replica and staging table names of each CDC source table (source => { replica, staging })."
  value       = local.cdc_names
}
