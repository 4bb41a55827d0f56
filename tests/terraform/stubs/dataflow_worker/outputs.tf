output "email" { value = "${var.account_id}@${var.project_id}.iam.gserviceaccount.com" }
output "member" { value = "serviceAccount:${var.account_id}@${var.project_id}.iam.gserviceaccount.com" }
output "unique_id" { value = "100000000000000000001" }
output "grants_done" { value = [] }
output "stub_grants" {
  value = {
    subscriptions     = var.subscriptions
    bigquery_datasets = var.bigquery_datasets
    bigquery_job_user = var.bigquery_job_user
    secret_ids        = var.secret_ids
    bucket            = var.bucket
  }
}
