output "stream_name" {
  description = "Name of the stream."
  value       = module.kinesis.stream_name
}

output "stream_arn" {
  description = "ARN of the stream."
  value       = module.kinesis.stream_arn
}

output "region" {
  description = "Region of the stream (the pipeline's Kinesis source needs it)."
  value       = module.kinesis.region
}

output "reader_role_arn" {
  description = "Role the GCP workers assume (AssumeRoleWithWebIdentity with a Google ID token whose audience is their unique id), or null."
  value       = module.kinesis.reader_role_arn
}

output "source_uri" {
  description = "The suite's Kinesis source URI (see transforms/io/kinesis/endpoints.py)."
  value       = "kinesis://${module.kinesis.stream_name}?region=${module.kinesis.region}"
}

output "alarm_arns" {
  description = "ARN of each CloudWatch alarm of the stream."
  value       = module.kinesis.alarm_arns
}
