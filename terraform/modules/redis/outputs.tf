output "host" {
  description = "Private IP address of the instance's primary endpoint."
  value       = google_redis_instance.this.host
}

output "port" {
  description = "Port of the primary endpoint (6378 with TLS, 6379 without)."
  value       = google_redis_instance.this.port
}

output "tls" {
  description = "Whether clients must use TLS (rediss://)."
  value       = var.transit_encryption_mode == "SERVER_AUTHENTICATION"
}

output "server_ca_certs" {
  description = "PEM certificates of the CA that signed the server certificate: clients must trust them to verify TLS."
  value       = [for cert in google_redis_instance.this.server_ca_certs : cert.cert]
}

output "auth_secret_id" {
  description = "Secret Manager secret holding the AUTH string (projects/P/secrets/S); grant roles/secretmanager.secretAccessor on it to readers."
  value       = google_secret_manager_secret.auth.id
}

output "auth_secret_version" {
  description = "Secret version holding the current AUTH string (projects/P/secrets/S/versions/N), or null when AUTH is off."
  value       = one(google_secret_manager_secret_version.auth[*].name)
}
