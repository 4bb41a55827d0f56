# A Kinesis stream for a Dataflow job on GCP: KMS-encrypted, 7 days of retention, and a reader
# role the GCP workers assume with their Google identity (no long-lived AWS keys), and
# CloudWatch alarms on the readers' iterator age and on throttling.

module "kinesis" {
  source = "../../../modules/aws_kinesis"

  name                           = var.stream_name
  stream_mode                    = var.stream_mode
  shard_count                    = var.shard_count
  retention_hours                = var.retention_hours
  reader_gcp_service_account_ids = var.dataflow_worker_unique_ids
  alarm_actions                  = var.alarm_actions
}
