output "dashboard_id" { value = "projects/${var.project_id}/dashboards/stub-${var.job_name}" }
output "dashboard_json" { value = local.dashboard_json }
output "alert_policy_ids" { value = { for name, alert in local.alerts : name => "projects/${var.project_id}/alertPolicies/stub-${name}" } }
output "alert_queries" { value = { for name, alert in local.alerts : name => alert.query } }
output "metric_names" { value = local.metric_names }
output "stub_notification_channels" { value = var.notification_channels }
