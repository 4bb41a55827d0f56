output "job_id" { value = "stub-${var.name}" }
output "state" { value = "JOB_STATE_RUNNING" }
output "console_url" { value = "https://console.cloud.google.com/dataflow/jobs/${var.region}/stub-${var.name}?project=${var.project_id}" }
output "stub_job" {
  value = {
    parameters              = var.parameters
    on_delete               = var.on_delete
    enable_streaming_engine = var.enable_streaming_engine
    private_ips             = var.private_ips
    sdk_container_image     = var.sdk_container_image
    container_spec_gcs_path = var.container_spec_gcs_path
    service_account_email   = var.service_account_email
  }
}
