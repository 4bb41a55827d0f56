output "repository_id" { value = "projects/${var.project_id}/locations/${var.location}/repositories/${var.repository_id}" }
output "repository_name" { value = var.repository_id }
output "location" { value = var.location }
output "image_prefix" { value = "${var.location}-docker.pkg.dev/${var.project_id}/${var.repository_id}" }
