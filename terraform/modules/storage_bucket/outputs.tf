output "name" {
  description = "Name of the bucket."
  value       = google_storage_bucket.this.name
}

output "url" {
  description = "gs:// URL of the bucket."
  value       = google_storage_bucket.this.url
}

output "template_prefix" {
  description = "Where Flex Template spec files go: gs://BUCKET/templates (one <pipeline>.json each)."
  value       = "${google_storage_bucket.this.url}/templates"
}

output "temp_location" {
  description = "Dataflow temp_location: gs://BUCKET/temp."
  value       = "${google_storage_bucket.this.url}/temp"
}

output "staging_location" {
  description = "Dataflow staging_location: gs://BUCKET/staging."
  value       = "${google_storage_bucket.this.url}/staging"
}
