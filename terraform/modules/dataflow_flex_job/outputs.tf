output "job_id" {
  description = "ID of the running Dataflow job."
  value       = google_dataflow_flex_template_job.this.job_id
}

output "state" {
  description = "State of the job as last read (JOB_STATE_RUNNING...)."
  value       = google_dataflow_flex_template_job.this.state
}

output "console_url" {
  description = "Link to the job in the Cloud console."
  value       = "https://console.cloud.google.com/dataflow/jobs/${var.region}/${google_dataflow_flex_template_job.this.job_id}?project=${var.project_id}"
}
