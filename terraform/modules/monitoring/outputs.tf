output "dashboard_id" {
  description = "Id of the dashboard (projects/P/dashboards/D)."
  value       = google_monitoring_dashboard.this.id
}

output "dashboard_json" {
  description = "The dashboard's JSON, the job's name and subscription filled in."
  value       = local.dashboard_json
}

output "alert_policy_ids" {
  description = "Id of each alert policy by alert (dead_letters, balance, system_lag, data_watermark_age, backlog_age, job_not_running)."
  value       = { for name, policy in google_monitoring_alert_policy.this : name => policy.name }
}

output "alert_queries" {
  description = "The PromQL condition of each alert, thresholds filled in."
  value       = { for name, alert in local.alerts : name => alert.query }
}

output "metric_names" {
  description = "The counters the pipeline reports (declared in transforms/metrics.py)."
  value       = local.metric_names
}
