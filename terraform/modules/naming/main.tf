# Every name of the stack, derived from (project, prefix, environment, pipeline) alone, so that a
# plan of this module needs no provider and the names can be tested offline.
locals {
  slug = replace(var.pipeline, "_", "-")
  base = "${var.prefix}-${var.environment}"
  # Per-pipeline names: "<prefix>-<env>-<pipeline-slug>".
  stem = "${local.base}-${local.slug}"

  # A short, stable suffix for names with tight limits (service accounts: 30 characters).
  hash4 = substr(sha256(local.stem), 0, 4)

  names = {
    input_topic        = "${local.stem}-input"
    input_subscription = "${local.stem}-input-dataflow"
    # Pub/Sub's own dead letter (messages not acknowledged after N deliveries), and the
    # subscription that keeps them (a topic without subscriptions drops what it receives).
    undeliverable_topic = "${local.stem}-undeliverable"
    undeliverable_hold  = "${local.stem}-undeliverable-hold"
    dataset_id          = replace("${local.base}_streaming", "-", "_")
    events_table        = "events"
    dead_letter_table   = "dead_letter"
    bucket              = "${var.project_id}-${local.base}-dataflow"
    repository_id       = "${local.base}-pipelines"
    redis_instance      = "${local.base}-metrics"
    redis_auth_secret   = "${local.base}-metrics-redis-auth"
    job_name            = local.stem
    # 6-30 characters: keep the start of the stem and a hash of all of it.
    service_account_id = "${trimsuffix(substr("df-${local.stem}", 0, 25), "-")}-${local.hash4}"
  }

  labels = merge(
    {
      app         = "beam-streaming-suite"
      environment = var.environment
      pipeline    = substr(replace(var.pipeline, "_", "-"), 0, 63)
      managed-by  = "terraform"
    },
    var.labels,
  )
}
