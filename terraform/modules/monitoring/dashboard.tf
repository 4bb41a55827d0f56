# Provider-free: the dashboard and alert conditions of the pipeline, read from pipelines.json,
# which terraform/generate.py writes from the metrics the code declares (transforms/metrics.py).
# No counter is named here: a counter added to the declaration reaches the dashboard through
# the generated file.

locals {
  catalog  = jsondecode(file("${path.module}/pipelines.json"))
  document = lookup(local.catalog, var.pipeline, null)
  # The generated JSON holds placeholders for the job and its subscription.
  dashboard_json = local.document == null ? "{}" : replace(
    replace(jsonencode(local.document.dashboard), "__JOB_NAME__", var.job_name),
    "__SUBSCRIPTION_ID__", coalesce(var.subscription_id, "none"),
  )
  # Every alert of the pipeline; the backlog alert only with a subscription.
  alerts = local.document == null ? {} : {
    for name, alert in local.document.alerts : name => {
      documentation = alert.documentation
      query = replace(
        replace(replace(alert.query, "__JOB_NAME__", var.job_name), "__SUBSCRIPTION_ID__", coalesce(var.subscription_id, "none")),
        "__THRESHOLD__", alert.threshold == null ? "0" : tostring(var.thresholds[alert.threshold]),
      )
    } if name != "backlog_age" || var.subscription_id != null
  }
  metric_names = local.document == null ? [] : [for metric in local.document.metrics : metric.name]
}
