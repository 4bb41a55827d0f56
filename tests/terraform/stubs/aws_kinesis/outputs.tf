output "stream_name" { value = var.name }
output "stream_arn" { value = "arn:aws:kinesis:eu-west-1:123456789012:stream/${var.name}" }
output "region" { value = "eu-west-1" }
output "kms_key_arn" { value = coalesce(var.kms_key_arn, "arn:aws:kms:eu-west-1:123456789012:key/stub") }
output "read_policy_arn" { value = "arn:aws:iam::123456789012:policy/${var.name}-kinesis-read" }
output "reader_role_arn" { value = length(var.reader_gcp_service_account_ids) > 0 ? "arn:aws:iam::123456789012:role/${var.name}-kinesis-reader" : null }
output "reader_group_name" { value = var.reader_group_name }
output "alarm_arns" { value = { for name in ["iterator_age", "read_throttled", "write_throttled"] : name => "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:${var.name}-${replace(name, "_", "-")}" } }
