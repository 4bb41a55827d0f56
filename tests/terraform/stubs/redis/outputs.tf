output "host" { value = "10.0.0.3" }
output "port" { value = var.transit_encryption_mode == "SERVER_AUTHENTICATION" ? 6378 : 6379 }
output "tls" { value = var.transit_encryption_mode == "SERVER_AUTHENTICATION" }
output "server_ca_certs" { value = ["-----BEGIN CERTIFICATE-----stub"] }
output "auth_secret_id" { value = "projects/${var.project_id}/secrets/${var.auth_secret_id}" }
output "auth_secret_version" { value = var.auth_enabled ? "projects/${var.project_id}/secrets/${var.auth_secret_id}/versions/1" : null }
