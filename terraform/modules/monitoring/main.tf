# A Cloud Monitoring dashboard and the alert policies of one Dataflow job of the suite.

resource "google_monitoring_dashboard" "this" {
  project        = var.project_id
  dashboard_json = local.dashboard_json

  lifecycle {
    precondition {
      condition     = local.document != null
      error_message = "pipeline ${var.pipeline} is not in pipelines.json (run terraform/generate.py); known: ${join(", ", keys(local.catalog))}."
    }
  }
}

resource "google_monitoring_alert_policy" "this" {
  for_each = local.alerts

  project               = var.project_id
  display_name          = "${var.job_name}: ${replace(each.key, "_", " ")}"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = merge(var.labels, { pipeline = var.pipeline, alert = each.key })

  conditions {
    display_name = replace(each.key, "_", " ")
    condition_prometheus_query_language {
      query               = each.value.query
      duration            = "${var.alert_duration_seconds}s"
      evaluation_interval = "60s"
    }
  }

  documentation {
    content   = "${each.value.documentation} Dashboard: ${var.pipeline} (${var.job_name})."
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "86400s"
  }
}
