# The whole GCP stack of the suite. Jobs (each reads its own subscription):
#   events_to_bigquery: input topic -> BigQuery events table
#   metrics_to_redis:   input topic -> per-minute metrics in Memorystore (TLS, AUTH string read
#                       from Secret Manager by the workers)       [deploy_metrics_to_redis]
#   cdc_replicate:      CDC topic -> BigQuery replica tables via staging + MERGE
#                                                                  [cdc_source_tables not empty]
# Every job dead-letters to the one dead_letter table. Plus the image repository and the bucket
# for template specs and temp files.
# Names, labels, table shapes and job parameters come from the provider-free naming and wiring
# modules, which `terraform test` checks offline.

locals {
  repo_root = "${path.module}/../../../.."
  cdc       = length(var.cdc_source_tables) > 0
  pipelines = concat(
    ["events_to_bigquery"],
    var.deploy_metrics_to_redis ? ["metrics_to_redis"] : [],
    local.cdc ? ["cdc_replicate"] : [],
  )
  # Which topic each pipeline reads.
  reads = { events_to_bigquery = "events", metrics_to_redis = "events", cdc_replicate = "cdc" }
}

module "stack_names" {
  source      = "../../../modules/naming"
  project_id  = var.project_id
  prefix      = var.prefix
  environment = var.environment
  pipeline    = "events_to_bigquery"
  labels      = var.labels
}

module "cdc_names" {
  source      = "../../../modules/naming"
  project_id  = var.project_id
  prefix      = var.prefix
  environment = var.environment
  pipeline    = "cdc_replicate"
  labels      = var.labels
}

module "names" {
  source   = "../../../modules/naming"
  for_each = toset(local.pipelines)

  project_id  = var.project_id
  prefix      = var.prefix
  environment = var.environment
  pipeline    = each.key
  labels      = var.labels
}

locals {
  shared = module.stack_names.names
  labels = module.stack_names.labels
  # The topics: name, undeliverable topic and hold subscription, from the naming module.
  topics = merge(
    { events = module.stack_names.names },
    local.cdc ? { cdc = module.cdc_names.names } : {},
  )
}

# ---- Storage for templates and temp files, and the image repository -------------------------

module "bucket" {
  source       = "../../../modules/storage_bucket"
  project_id   = var.project_id
  name         = local.shared.bucket
  location     = var.region
  kms_key_name = var.kms_key_name
  labels       = local.labels
}

module "images" {
  source        = "../../../modules/artifact_registry"
  project_id    = var.project_id
  repository_id = local.shared.repository_id
  location      = var.region
  kms_key_name  = var.kms_key_name
  labels        = local.labels
}

# ---- Pub/Sub: one topic per kind of input, one subscription per job ------------------------

module "pubsub" {
  source   = "../../../modules/pubsub"
  for_each = local.topics

  project_id                         = var.project_id
  topic_name                         = each.value.input_topic
  dead_letter_topic_name             = each.value.undeliverable_topic
  dead_letter_hold_subscription_name = each.value.undeliverable_hold
  kms_key_name                       = var.kms_key_name
  labels                             = local.labels
  subscriptions = {
    for pipeline in local.pipelines : module.names[pipeline].names.input_subscription => {
      # Changes of one key must be applied in order; Debezium/Datastream publishers set the
      # ordering key to the primary key.
      message_ordering = pipeline == "cdc_replicate"
    } if local.reads[pipeline] == each.key
  }
}

# ---- BigQuery: events, dead letters, CDC staging and replicas -------------------------------

module "tables" {
  source = "../../../modules/wiring"
  tables = {
    (local.shared.events_table) = {
      schema_json     = file("${local.repo_root}/pipelines/schemas/events.json")
      description     = "Events written by events_to_bigquery (schema: pipelines/schemas/events.json)."
      partition_field = "ts"
      clustering      = ["event_type", "user_id"]
    }
    (local.shared.dead_letter_table) = {
      schema_json               = file("${path.module}/../../../schemas/dead_letter.json")
      description               = "Records that failed any step of any pipeline, with the original bytes (transforms/dead_letter.py)."
      partition_field           = "error_timestamp"
      clustering                = ["pipeline", "step", "reason"]
      partition_expiration_days = 90
    }
  }
  cdc = local.cdc ? {
    source_tables       = var.cdc_source_tables
    staging_schema_json = file("${path.module}/../../../schemas/cdc_staging.json")
    replica_schema_json = file("${path.module}/../../../schemas/cdc_replica.json")
  } : null
}

module "bigquery" {
  source              = "../../../modules/bigquery"
  project_id          = var.project_id
  dataset_id          = local.shared.dataset_id
  location            = var.bigquery_location
  tables              = module.tables.tables
  deletion_protection = var.deletion_protection
  kms_key_name        = var.kms_key_name
  labels              = local.labels
}

# ---- Redis with AUTH (in Secret Manager) and TLS ---------------------------------------------

module "redis" {
  source   = "../../../modules/redis"
  for_each = var.deploy_metrics_to_redis ? toset(["metrics"]) : toset([])

  project_id           = var.project_id
  name                 = local.shared.redis_instance
  region               = var.region
  authorized_network   = var.network
  auth_secret_id       = local.shared.redis_auth_secret
  customer_managed_key = var.kms_key_name
  labels               = local.labels
}

# ---- One worker account and one job per pipeline ---------------------------------------------

locals {
  dead_letter_uri = "bigquery://${module.bigquery.table_specs[local.shared.dead_letter_table]}?create=never"
  sinks = {
    # The events table holds the built-in events schema: records are validated against it.
    events_to_bigquery = {
      sink   = "bigquery://${module.bigquery.table_specs[local.shared.events_table]}?create=never"
      schema = "builtin:events"
    }
    metrics_to_redis = { spec = "builtin:api_metrics", schema = "builtin:events" } # sink: the wiring module's redis_sink
    cdc_replicate = {
      sink   = "bigquery-replica://${var.project_id}:${module.bigquery.dataset_id}?tables=${join(",", var.cdc_source_tables)}"
      format = var.cdc_format
    }
  }
}

module "wiring" {
  source   = "../../../modules/wiring"
  for_each = toset(local.pipelines)

  pipeline = each.key
  option_values = merge(
    {
      source      = module.pubsub[local.reads[each.key]].source_uris[module.names[each.key].names.input_subscription]
      dead_letter = local.dead_letter_uri
    },
    local.sinks[each.key],
  )
  # metrics_to_redis: the sink is Memorystore over TLS, the password read from Secret Manager.
  redis_sink = each.key == "metrics_to_redis" ? {
    host        = module.redis["metrics"].host
    port        = module.redis["metrics"].port
    tls         = module.redis["metrics"].tls
    auth_secret = module.redis["metrics"].auth_secret_id
    sink_params = { mode = "hash", key = "metrics:{endpoint}:{window_start}", ttl = "86400" }
  } : null
}

module "worker" {
  source   = "../../../modules/dataflow_worker"
  for_each = toset(local.pipelines)

  project_id          = var.project_id
  account_id          = module.names[each.key].names.service_account_id
  pipeline            = each.key
  subscriptions       = [module.pubsub[local.reads[each.key]].subscription_names[module.names[each.key].names.input_subscription]]
  bigquery_datasets   = [module.bigquery.dataset_id]
  bigquery_job_user   = each.key == "cdc_replicate" # the replica sink runs MERGE queries
  secret_ids          = each.key == "metrics_to_redis" ? [module.redis["metrics"].auth_secret_id] : []
  bucket              = module.bucket.name
  artifact_repository = { location = module.images.location, name = module.images.repository_name }
}

module "job" {
  source   = "../../../modules/dataflow_flex_job"
  for_each = var.deploy_jobs ? toset(local.pipelines) : toset([])

  project_id               = var.project_id
  region                   = var.region
  name                     = module.names[each.key].names.job_name
  container_spec_gcs_path  = "${module.bucket.template_prefix}/${each.key}.json"
  template_parameter_names = module.wiring[each.key].parameter_names
  parameters               = module.wiring[each.key].parameters
  service_account_email    = module.worker[each.key].email
  temp_location            = module.bucket.temp_location
  staging_location         = module.bucket.staging_location
  sdk_container_image      = "${module.images.image_prefix}/beam-streaming-suite${startswith(var.image_tag, "@") ? "" : ":"}${var.image_tag}"
  network                  = var.network
  subnetwork               = var.subnetwork
  max_workers              = var.max_workers
  kms_key_name             = var.kms_key_name
  labels                   = module.names[each.key].labels
  transform_name_mapping   = lookup(var.transform_name_mappings, each.key, {})

  depends_on = [module.worker]
}

# ---- A dashboard and the alert set per job, from the metrics the code declares ---------------

module "monitoring" {
  source   = "../../../modules/monitoring"
  for_each = var.deploy_jobs ? toset(local.pipelines) : toset([])

  project_id            = var.project_id
  pipeline              = each.key
  job_name              = module.names[each.key].names.job_name
  subscription_id       = module.names[each.key].names.input_subscription
  notification_channels = var.notification_channels
  thresholds            = var.alert_thresholds
  labels                = module.names[each.key].labels
}
