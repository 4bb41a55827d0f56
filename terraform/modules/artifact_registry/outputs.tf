output "repository_id" {
  description = "ID of the repository (projects/P/locations/L/repositories/R)."
  value       = google_artifact_registry_repository.this.id
}

output "repository_name" {
  description = "Short name of the repository, for IAM bindings."
  value       = google_artifact_registry_repository.this.repository_id
}

output "location" {
  description = "Region of the repository."
  value       = google_artifact_registry_repository.this.location
}

output "image_prefix" {
  description = "Prefix of image names in the repository: REGION-docker.pkg.dev/PROJECT/REPOSITORY."
  value       = "${var.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.this.repository_id}"
}
