locals {
  # Generated from pipelines.catalog by terraform/generate.py; a test keeps it in step.
  catalog = jsondecode(file("${path.module}/pipeline_options.json"))
  # The template's parameters: the selector (`pipeline`), then every option.
  options = var.pipeline == null ? [] : local.catalog[var.pipeline].parameters

  # The option values: a Redis sink's URI as `sink` unless one is given, then the given values.
  given = merge(local.redis_uri == null ? {} : { sink = local.redis_uri }, var.option_values)

  # Every parameter of the template, so the job's parameter keys equal the template's parameter
  # names: the given value, else the declared default, else "" (an optional option left blank).
  # Required options without a value are refused by the parameters output's precondition.
  parameters = {
    for option in local.options :
    option.name => lookup(local.given, option.name, option.default == null ? "" : option.default)
  }

  time_types = ["TIMESTAMP", "DATE", "DATETIME"]

  # A schema file's text, as the field list BigQuery's table resource takes.
  table_fields = {
    for key, spec in var.tables : key => try(jsondecode(spec.schema_json).fields, jsondecode(spec.schema_json))
  }

  tables = {
    for key, spec in var.tables : key => {
      schema                    = jsonencode(local.table_fields[key])
      description               = spec.description
      partition_field           = spec.partition_field
      clustering                = spec.clustering
      partition_expiration_days = spec.partition_expiration_days
    }
  }

  # replica_tables.replica_name: every character but ASCII letters, digits and _ becomes _.
  cdc_names = var.cdc == null ? {} : {
    for t in var.cdc.source_tables : t => {
      replica = replace(t, "/[^A-Za-z0-9_]/", "_")
      staging = "${replace(t, "/[^A-Za-z0-9_]/", "_")}${var.cdc.staging_suffix}"
    }
  }

  cdc_tables = var.cdc == null ? {} : merge(
    {
      for t, n in local.cdc_names : n.replica => {
        schema                    = jsonencode(jsondecode(var.cdc.replica_schema_json))
        description               = "Replica of ${t}: latest row per key, tombstones for deletes (bigquery-replica:// sink)."
        partition_field           = "_merged_at"
        clustering                = tolist(["key"])
        partition_expiration_days = null
      }
    },
    {
      for t, n in local.cdc_names : n.staging => {
        schema                    = jsonencode(jsondecode(var.cdc.staging_schema_json))
        description               = "Changes of ${t} as staged, merged into ${n.replica} by sequence_key."
        partition_field           = "ingest_time"
        clustering                = tolist(["key"])
        partition_expiration_days = var.cdc.staging_expiration
      }
    },
  )

  redis_query = var.redis_sink == null ? "" : join("&", [
    for name, value in merge(
      var.redis_sink.sink_params,
      var.redis_sink.auth_secret == null ? {} : { password_secret = var.redis_sink.auth_secret },
    ) : "${name}=${value}"
  ])
  redis_uri = var.redis_sink == null ? null : format(
    "%s://%s:%d/%d?%s",
    var.redis_sink.tls ? "rediss" : "redis", var.redis_sink.host, var.redis_sink.port, var.redis_sink.db, local.redis_query,
  )
}
