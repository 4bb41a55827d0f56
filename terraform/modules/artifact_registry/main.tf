# The Docker repository for the pipeline image (one image is both the Flex Template launcher and
# the SDK worker image).

resource "google_artifact_registry_repository" "this" {
  project       = var.project_id
  location      = var.location
  repository_id = var.repository_id
  description   = "Images of the beam-streaming-suite pipelines (Flex Template launcher + worker)."
  format        = "DOCKER"
  kms_key_name  = var.kms_key_name
  labels        = var.labels

  docker_config {
    immutable_tags = var.immutable_tags
  }
}
