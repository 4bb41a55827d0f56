# A dataset and its tables: every table partitioned by day and protected from deletion by
# default. No `access` blocks: readers and writers are granted per dataset with
# google_bigquery_dataset_iam_member (see the dataflow_worker module).

resource "google_bigquery_dataset" "this" {
  #checkov:skip=CKV_GCP_81:CMK is opt-in via var.kms_key_name (default_encryption_configuration); Google-managed encryption is the default.
  project                    = var.project_id
  dataset_id                 = var.dataset_id
  location                   = var.location
  description                = var.description
  labels                     = var.labels
  delete_contents_on_destroy = false

  dynamic "default_encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }
}

resource "google_bigquery_table" "this" {
  #checkov:skip=CKV_GCP_80:CMK is opt-in via var.kms_key_name (encryption_configuration); Google-managed encryption is the default.
  for_each = var.tables

  project             = var.project_id
  dataset_id          = google_bigquery_dataset.this.dataset_id
  table_id            = each.key
  description         = each.value.description
  schema              = each.value.schema
  clustering          = length(each.value.clustering) > 0 ? each.value.clustering : null
  deletion_protection = var.deletion_protection
  labels              = var.labels

  time_partitioning {
    type          = "DAY"
    field         = each.value.partition_field
    expiration_ms = each.value.partition_expiration_days == null ? null : each.value.partition_expiration_days * 86400000
  }

  dynamic "encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_configuration.value
    }
  }
}
