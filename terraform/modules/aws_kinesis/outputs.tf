output "stream_name" {
  description = "Name of the stream (the suite's kinesis source names it)."
  value       = aws_kinesis_stream.this.name
}

output "stream_arn" {
  description = "ARN of the stream."
  value       = aws_kinesis_stream.this.arn
}

output "region" {
  description = "AWS region of the stream."
  value       = data.aws_region.this.name
}

output "kms_key_arn" {
  description = "ARN of the KMS key encrypting the stream."
  value       = local.key_arn
}

output "read_policy_arn" {
  description = "ARN of the policy allowing to read (and decrypt) the stream."
  value       = aws_iam_policy.read.arn
}

output "reader_role_arn" {
  description = "ARN of the role GCP workers assume with their Google identity token, or null."
  value       = one(aws_iam_role.reader[*].arn)
}

output "reader_group_name" {
  description = "Name of the readers group, or null."
  value       = one(aws_iam_group.readers[*].name)
}

output "alarm_arns" {
  description = "ARN of each CloudWatch alarm: iterator_age, read_throttled, write_throttled."
  value       = { for name, alarm in aws_cloudwatch_metric_alarm.stream : name => alarm.arn }
}
