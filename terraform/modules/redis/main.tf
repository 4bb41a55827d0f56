# Memorystore for Redis with AUTH and TLS on by default. The AUTH string goes from the instance
# straight into a Secret Manager secret version; workers read it by reference
# (password_secret=projects/P/secrets/S in the sink URI). It also lives in the Terraform state,
# as every generated credential does: keep the state in an encrypted, access-controlled backend.

resource "google_redis_instance" "this" {
  project                 = var.project_id
  name                    = var.name
  region                  = var.region
  tier                    = var.tier
  memory_size_gb          = var.memory_size_gb
  redis_version           = var.redis_version
  authorized_network      = var.authorized_network
  connect_mode            = var.connect_mode
  auth_enabled            = var.auth_enabled
  transit_encryption_mode = var.transit_encryption_mode
  customer_managed_key    = var.customer_managed_key
  labels                  = var.labels
}

resource "google_secret_manager_secret" "auth" {
  project   = var.project_id
  secret_id = var.auth_secret_id
  labels    = var.labels

  # Kept in the instance's region only.
  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}

resource "google_secret_manager_secret_version" "auth" {
  count = var.auth_enabled ? 1 : 0

  secret      = google_secret_manager_secret.auth.id
  secret_data = google_redis_instance.this.auth_string
}
