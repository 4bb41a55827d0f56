output "name" { value = var.name }
output "url" { value = "gs://${var.name}" }
output "template_prefix" { value = "gs://${var.name}/templates" }
output "temp_location" { value = "gs://${var.name}/temp" }
output "staging_location" { value = "gs://${var.name}/staging" }
